"""Where the available drivers are: an R-tree of points, queried by great-circle distance.

Why an R-tree (libspatialindex via ``rtree``) and not an H3/geohash grid: the question
asked on every ride is "the k nearest available drivers within R km", over a set that
changes all the time (drivers go on and off, move, get assigned). An R-tree answers a
bounding-box query in O(log n + hits) with O(log n) insert/delete and needs no choice of
cell resolution; a grid needs a resolution tuned to driver density plus neighbour-ring
expansion, which is what the expanding search below does anyway, without the tuning.

The tree stores (lng, lat) points in degrees, so its own ``nearest`` (planar, in degrees)
would be wrong away from the equator: one degree of longitude is 111 km at the equator
and 55 km at 60 degrees. So :meth:`DriverIndex.nearest` asks the tree only for a box that
surely contains every point within r km, ranks those by haversine distance, and doubles
r until it has enough candidates or reaches the maximum pickup distance.
"""

from __future__ import annotations

from rtree import index as _rtree

from contracts.geo import Position, bounding_box, haversine_km


class DriverIndex:
    """Available drivers and their last known positions (one replica's view)."""

    def __init__(self, *, initial_radius_km: float = 1.0) -> None:
        self._tree = _rtree.Index(interleaved=True)
        self._positions: dict[str, Position] = {}
        self._handles: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._next_handle = 0
        self.initial_radius_km = initial_radius_km

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, driver_id: object) -> bool:
        return driver_id in self._positions

    def position(self, driver_id: str) -> Position | None:
        return self._positions.get(driver_id)

    def upsert(self, driver_id: str, position: Position) -> None:
        """Add a driver, or move one already there."""
        self.remove(driver_id)
        handle = self._next_handle
        self._next_handle += 1
        self._tree.insert(handle, (position.lng, position.lat, position.lng, position.lat))
        self._positions[driver_id] = position
        self._handles[driver_id] = handle
        self._ids[handle] = driver_id

    def remove(self, driver_id: str) -> None:
        """Forget a driver (no longer available); unknown ids are ignored."""
        position = self._positions.pop(driver_id, None)
        if position is None:
            return
        handle = self._handles.pop(driver_id)
        del self._ids[handle]
        self._tree.delete(handle, (position.lng, position.lat, position.lng, position.lat))

    def replace_all(self, drivers: dict[str, Position]) -> None:
        """Make the index hold exactly ``drivers`` (a resync from the database)."""
        for driver_id in [d for d in self._positions if d not in drivers]:
            self.remove(driver_id)
        for driver_id, position in drivers.items():
            if self._positions.get(driver_id) != position:
                self.upsert(driver_id, position)

    def within(self, center: Position, radius_km: float) -> list[tuple[str, float]]:
        """Every driver within ``radius_km`` of ``center``, nearest first (ties by id)."""
        found = []
        for handle in self._tree.intersection(bounding_box(center, radius_km)):
            driver_id = self._ids[handle]
            km = haversine_km(center, self._positions[driver_id])
            if km <= radius_km:
                found.append((km, driver_id))
        found.sort()
        return [(driver_id, km) for km, driver_id in found]

    def nearest(
        self, center: Position, *, max_km: float, limit: int = 5
    ) -> list[tuple[str, float]]:
        """Up to ``limit`` nearest drivers within ``max_km``, by great-circle distance.

        Exact: the points within r form a prefix of the full ranking, so once ``limit``
        of them are found (or r reached ``max_km``) no farther point can outrank them.
        """
        if limit <= 0 or not self._positions:
            return []
        radius = min(self.initial_radius_km, max_km)
        while True:
            found = self.within(center, radius)
            if len(found) >= limit or radius >= max_km:
                return found[:limit]
            radius = min(radius * 2, max_km)
