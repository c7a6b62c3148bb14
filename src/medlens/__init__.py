"""MedLens: local-first tools for Google's open medical models (MedGemma, MedSigLIP).

Not a medical device. Everything MedLens produces is an AI-generated draft that a
qualified clinician must review. This module stays light: it never imports torch or
transformers (backends import them lazily).
"""

from medlens.disclaimer import DISCLAIMER, TEST_MODEL_LABEL

__version__ = "0.1.0"
__all__ = ["DISCLAIMER", "TEST_MODEL_LABEL", "__version__"]
