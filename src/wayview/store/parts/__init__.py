"""wayview.store.parts: Store protocol parts per domain; wayview.store.base.Store joins them."""
