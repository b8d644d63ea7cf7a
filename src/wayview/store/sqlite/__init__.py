"""wayview.store.sqlite: the embedded SQLite backend."""
