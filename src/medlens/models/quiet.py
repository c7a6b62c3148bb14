"""Quiet third-party output where models load, unless the user asked for it.

transformers prints config warnings ("[transformers] Model config: ...") and a
"Loading weights" tqdm bar for every model it loads; huggingface_hub adds download
bars. In `medlens interpret`, `classify` and the server log they drown what MedLens
itself says, so they are silenced by default. `--verbose` on a command, or
MEDLENS_VERBOSE=1 in the environment, keeps them; an explicit TRANSFORMERS_VERBOSITY
is honoured too. Imports nothing heavy: libraries not yet imported are set through
their environment variables, which they read on import.
"""

from __future__ import annotations

import os
import sys
import warnings

VERBOSE_ENV = "MEDLENS_VERBOSE"
_TRUE = {"1", "true", "yes", "on"}

# Python warnings raised while loading known-good models that say nothing a user can act on.
_NOISY_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r".*TypedStorage is deprecated.*", UserWarning),
    (r".*`torch_dtype` is deprecated.*", UserWarning),
    (r".*resume_download.*", FutureWarning),
    (r".*The default value of the antialias parameter.*", UserWarning),
)
_NOISY_MODULES = ("transformers", "huggingface_hub", "tokenizers", "accelerate", "torch")


def verbose_requested() -> bool:
    """True when MEDLENS_VERBOSE asks to keep third-party logs and progress bars."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in _TRUE


def set_verbose(verbose: bool) -> None:
    """Record a command's `--verbose` for every later model load in this process."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"


def quiet_third_party() -> bool:
    """Silence transformers / huggingface_hub logs and bars; False when verbose was asked."""
    if verbose_requested():
        return False
    # Read on import by huggingface_hub (bars) and transformers (advisory warnings).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        _quiet_transformers()
    for pattern, category in _NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for module in _NOISY_MODULES:
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    return True


def _quiet_transformers() -> None:
    from transformers.utils import logging as tf_logging

    tf_logging.disable_progress_bar()  # the "Loading weights" bar
    if not os.environ.get("TRANSFORMERS_VERBOSITY"):
        tf_logging.set_verbosity_error()  # config warnings; errors still show
