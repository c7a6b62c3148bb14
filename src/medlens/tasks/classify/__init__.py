"""Classification with image-text encoders: zero-shot scores, label sets, trained probes."""
