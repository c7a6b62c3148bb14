"""Test-wide setup: offline, isolated data dir, shared data location, tiny models.

HF_HUB_OFFLINE is set here, before anything imports transformers; pytest-socket
(`--allow-hosts` in pyproject) refuses every connection but loopback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Never read or write the user's ~/.medlens from tests.
_SESSION_DATA = Path(tempfile.mkdtemp(prefix="medlens-test-data-"))
os.environ["MEDLENS_DATA_DIR"] = str(_SESSION_DATA)
os.environ.pop("MEDLENS_CONFIG", None)
# Test models are built once per version here and symlinked into each session's data dir.
os.environ.setdefault(
    "MEDLENS_TEST_MODELS_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "test-models")
)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDLENS_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        # CI always has ../shared beside the clone: a missing folder there is a failure,
        # not a reason to skip half the suite.
        if os.environ.get("MEDLENS_CI") == "1":
            pytest.fail(f"shared data not found at {SHARED_DATA} (set MEDLENS_SHARED_DATA)")
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nih_images(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "cxr" / "nih_cxr14_sample" / "images").glob("*.png"))


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def test_models() -> dict[str, Path]:
    """All MedLens test models (name -> folder), built once and cached (see testmodels.py).

    Names: medgemma-tiny, medsiglip-tiny, medgemma-realtext, gemma3-270m; registry ids
    medlens/test-medgemma, medlens/test-medsiglip, medlens/test-medgemma-realtext,
    medlens/gemma3-270m resolve to them.
    """
    from medlens.config import load_settings
    from medlens.models.testmodels import ensure_test_models

    return ensure_test_models(load_settings())


@pytest.fixture(scope="session")
def tiny_test_models() -> dict[str, Path]:
    """Only the random tiny models (seconds to build): medgemma-tiny, medsiglip-tiny."""
    from medlens.config import load_settings
    from medlens.models.testmodels import ensure_test_models

    return ensure_test_models(load_settings(), realtext=False)
