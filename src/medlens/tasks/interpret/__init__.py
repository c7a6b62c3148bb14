"""The X-ray pipeline: study in, typed Interpretation out, and follow-up questions."""
