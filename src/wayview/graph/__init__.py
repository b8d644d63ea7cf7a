"""wayview.graph: the Graph (entity) API use cases, independent of HTTP."""
