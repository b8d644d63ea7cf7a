"""wayview.model.geo: distances and bearings on a spherical Earth (WGS84 degrees)."""

from __future__ import annotations

import math

__all__ = ["EARTH_RADIUS_M", "bearing_deg", "haversine_m"]

#: Mean Earth radius (IUGG), the usual sphere for haversine distances.
EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (spherical Earth).

    >>> round(haversine_m(0.0, 0.0, 0.0, 1.0))
    111195
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north.

    >>> round(bearing_deg(0.0, 0.0, 0.0, 1.0)), round(bearing_deg(0.0, 0.0, -1.0, 0.0))
    (90, 180)
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_lambda = math.radians(lon2 - lon1)
    y = math.sin(d_lambda) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(d_lambda)
    return math.degrees(math.atan2(y, x)) % 360.0
