"""wayview.api: the HTTP layer (the only package importing the web framework)."""
