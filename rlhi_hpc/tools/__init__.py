"""Command-line tools (offline tiny model builder, ...)."""
