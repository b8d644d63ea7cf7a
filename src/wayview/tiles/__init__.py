"""wayview.tiles: XYZ tile math, line clipping/simplification and the MVT 2.1 encoder.

Modules (import them directly; this package re-exports nothing and does no work at import):

- `wayview.tiles.tilemath`: pure Web-Mercator XYZ math (bounds, lon/lat → tile, tile pixels).
- `wayview.tiles.geometry`: `clip_line` and `simplify` for the `sequence` layer.
- `wayview.tiles.mvt`: `encode_tile`, a numpy-vectorised Mapbox Vector Tile 2.1 encoder.
"""
