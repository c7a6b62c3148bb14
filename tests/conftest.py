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

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDLENS_SHARED_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def nih_images(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "cxr" / "nih_cxr14_sample" / "images").glob("*.png"))


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"
