"""wayview.ingest: read photos, cut them into sequences, store them."""
