"""Imaging front door: ingest (PNG, JPEG, DICOM) → validate → de-identify → preprocess."""
