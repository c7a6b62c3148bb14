"""Command-line interface (Typer). One module per command group; see main.py."""
