"""Patient records (FHIR R4) read into a short, de-identified context, and long-record summaries."""
