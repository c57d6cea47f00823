"""The driver index: exact great-circle nearest neighbours from an R-tree."""

from __future__ import annotations

import pytest
from contracts.geo import Position, bounding_box, haversine_km
from hypothesis import given, settings
from hypothesis import strategies as st
from matching.index import DriverIndex

BERLIN = Position(lat=52.52, lng=13.405)


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        (Position(lat=52.52, lng=13.405), Position(lat=48.8566, lng=2.3522), 877.5),  # Berlin-Paris
        (Position(lat=0, lng=0), Position(lat=0, lng=1), 111.2),
        (Position(lat=60, lng=0), Position(lat=60, lng=1), 55.6),  # a degree shrinks north
        (Position(lat=0, lng=179.5), Position(lat=0, lng=-179.5), 111.2),  # across the antimeridian
        (Position(lat=10, lng=10), Position(lat=10, lng=10), 0.0),
    ],
)
def test_haversine(a: Position, b: Position, km: float) -> None:
    """Great-circle distances match known values within 0.5 km."""
    assert haversine_km(a, b) == pytest.approx(km, abs=0.5)


def test_nearest_is_by_great_circle_not_by_degrees() -> None:
    """At 60 degrees north a driver 1 degree east (55 km) beats one 0.6 degrees north (67 km)."""
    index = DriverIndex()
    center = Position(lat=60.0, lng=10.0)
    index.upsert("east", Position(lat=60.0, lng=11.0))
    index.upsert("north", Position(lat=60.6, lng=10.0))
    assert [d for d, _ in index.nearest(center, max_km=100, limit=2)] == ["east", "north"]


def test_max_distance_and_limit() -> None:
    """Drivers beyond max_km are never proposed; at most `limit` come back, nearest first."""
    index = DriverIndex()
    for i in range(10):
        index.upsert(f"d{i}", Position(lat=BERLIN.lat + 0.01 * i, lng=BERLIN.lng))
    found = index.nearest(BERLIN, max_km=3.0, limit=100)
    assert [d for d, _ in found] == ["d0", "d1", "d2"]
    assert [d for d, _ in index.nearest(BERLIN, max_km=50, limit=4)] == ["d0", "d1", "d2", "d3"]


def test_upsert_moves_and_remove_forgets() -> None:
    """Moving a driver replaces its point; removing it takes it out of every answer."""
    index = DriverIndex()
    index.upsert("d", BERLIN)
    index.upsert("d", Position(lat=53.0, lng=13.405))
    assert len(index) == 1
    assert index.nearest(BERLIN, max_km=10) == []
    index.remove("d")
    index.remove("never-there")
    assert "d" not in index
    assert index.nearest(Position(lat=53.0, lng=13.405), max_km=10) == []


def test_replace_all_resyncs() -> None:
    """replace_all leaves exactly the given drivers at the given places."""
    index = DriverIndex()
    index.upsert("gone", BERLIN)
    index.upsert("moved", BERLIN)
    there = Position(lat=52.6, lng=13.5)
    index.replace_all({"moved": there, "new": BERLIN})
    assert sorted(["moved", "new"]) == sorted(d for d, _ in index.within(BERLIN, 50))
    assert index.position("moved") == there


def test_bounding_box_near_the_pole_covers_all_longitudes() -> None:
    """A circle reaching the pole needs every longitude."""
    assert bounding_box(Position(lat=89.9, lng=0), 50)[0::2] == (-180.0, 180.0)


points = st.builds(
    Position,
    lat=st.floats(min_value=52.3, max_value=52.7),
    lng=st.floats(min_value=13.0, max_value=13.8),
)


@settings(max_examples=150, deadline=None)
@given(
    drivers=st.dictionaries(st.text("abcdef", min_size=1, max_size=4), points, max_size=40),
    center=points,
    max_km=st.floats(min_value=0.1, max_value=40),
    limit=st.integers(min_value=1, max_value=8),
)
def test_nearest_equals_a_brute_force_scan(
    drivers: dict[str, Position], center: Position, max_km: float, limit: int
) -> None:
    """The index answers exactly what sorting every driver by haversine answers."""
    index = DriverIndex(initial_radius_km=0.5)
    for driver_id, position in drivers.items():
        index.upsert(driver_id, position)
    expected = sorted(
        (haversine_km(center, p), d)
        for d, p in drivers.items()
        if haversine_km(center, p) <= max_km
    )[:limit]
    assert index.nearest(center, max_km=max_km, limit=limit) == [(d, km) for km, d in expected]
