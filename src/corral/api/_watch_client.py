"""The watch endpoints, for the CLI (a part of :class:`ApiClient`'s session)."""

from __future__ import annotations

from pydantic import TypeAdapter

from corral.api._client import ApiClient
from corral.api._reload import ReloadResult

_RESULT = TypeAdapter(ReloadResult)


class WatchClient:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def reload(self, service: str) -> ReloadResult:
        return self._api._parsed(_RESULT, "POST", f"/services/{service}/reload")
