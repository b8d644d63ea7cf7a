"""Helpers of bench/peers.py: the persistent PostgreSQL cluster, the peers' loaders, ST_AsMVT."""
