"""wayview.tiles: vector tiles: XYZ tile math, line geometry, the MVT encoder and tile serving.

Import the modules directly (e.g. `wayview.tiles.mvt.encode_tile`,
`wayview.tiles.tilemath.project`, `wayview.tiles.geometry.clip_line`); this package re-exports
nothing and does no work at import.
"""
