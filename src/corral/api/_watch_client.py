"""The watch endpoints, for the CLI (a part of :class:`ApiClient`'s session)."""

from __future__ import annotations

from pydantic import TypeAdapter

from corral.api._client import ApiClient
from corral.api._reload import ManifestApplied, ReloadResult

_RESULT = TypeAdapter(ReloadResult)
_APPLIED = TypeAdapter(ManifestApplied)


class WatchClient:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def reload(self, service: str) -> ReloadResult:
        return self._api._parsed(_RESULT, "POST", f"/services/{service}/reload")

    def apply_manifest(self) -> ManifestApplied:
        """Raises ApiError 422 (its detail: the located problems) for an invalid manifest."""
        return self._api._parsed(_APPLIED, "POST", "/manifest/apply")
