"""wayview: a self-hostable street-level imagery server speaking the Mapillary API v4."""

__version__ = "0.1.0"
