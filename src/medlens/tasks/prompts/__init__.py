"""Versioned prompt data files (TOML). Loaded by medlens.tasks.prompting; never edited
in place without bumping `version` (the version is recorded in every provenance)."""
