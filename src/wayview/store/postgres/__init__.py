"""wayview.store.postgres: the Store protocol on PostgreSQL + PostGIS (scale-out deployments)."""
