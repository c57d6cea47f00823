"""Coordinates on the Earth and great-circle distance between them."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG); haversine error against an ellipsoid stays under 0.5%."""

KM_PER_DEGREE_LAT = math.pi * EARTH_RADIUS_KM / 180.0


class Position(BaseModel):
    """A point: ``{"lat": .., "lng": ..}`` in decimal degrees (WGS 84)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lat: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False)
    lng: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)


def haversine_km(a: Position, b: Position) -> float:
    """Great-circle distance between two positions, in kilometres."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat = lat2 - lat1
    dlng = math.radians(b.lng - a.lng)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlng / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def bounding_box(center: Position, radius_km: float) -> tuple[float, float, float, float]:
    """``(min_lng, min_lat, max_lng, max_lat)`` containing every point within ``radius_km``.

    The box is clamped at the poles and does not wrap the antimeridian (a city does not
    straddle it; a box that would is clamped to [-180, 180], so it may miss points just
    across the line, never include wrong ones).
    """
    dlat = radius_km / KM_PER_DEGREE_LAT
    min_lat, max_lat = max(-90.0, center.lat - dlat), min(90.0, center.lat + dlat)
    # The widest longitude span of the circle is at the latitude closest to a pole.
    widest = max(abs(min_lat), abs(max_lat))
    cos_lat = math.cos(math.radians(widest))
    if cos_lat < 1e-9 or radius_km / (KM_PER_DEGREE_LAT * cos_lat) >= 180.0:
        return (-180.0, min_lat, 180.0, max_lat)
    dlng = radius_km / (KM_PER_DEGREE_LAT * cos_lat)
    return (max(-180.0, center.lng - dlng), min_lat, min(180.0, center.lng + dlng), max_lat)
