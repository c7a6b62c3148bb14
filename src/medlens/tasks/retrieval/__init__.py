"""The case library: similar-case search by image or text, its tables and vector index."""
