"""Hospital integration: PACS pull (DICOMweb, DIMSE), listening, results pushed back.

- `settings.py`: the configured nodes and URLs (from `medlens.config.Settings`); a
  destination that is not configured is never contacted.
- `identity.py`: the original identifying header of an integrated study, kept apart
  from the (de-identified) normal store and used only to build outgoing objects.
- `dicomweb.py` (QIDO-RS / WADO-RS / STOW-RS) and `dimse.py` (C-ECHO / C-FIND /
  C-MOVE / C-STORE) are the two ways to talk to a PACS.
- `pull.py`: retrieve a study → capture its identity → the normal intake
  (`medlens.jobs.intake`) → one MedLens study and job.

This package sits beside `server`/`cli` (it uses `jobs` and `store`); nothing below
`jobs` imports it. Network libraries are imported lazily, so `import medlens` stays light.
"""
