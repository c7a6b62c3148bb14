"""Built-in zero-shot label sets (TOML data files; see docs/retrieval.md for the format)."""
