"""Texts that every MedLens output carries."""

DISCLAIMER = "Not a medical device. AI-generated draft; must be reviewed by a qualified clinician."
TEST_MODEL_LABEL = "TEST MODEL: output is not medical"
DEMO_BANNER = "DEMO: test model, output is meaningless"
