"""wayview.model: pure domain objects and rules (no IO, no framework, no driver)."""
