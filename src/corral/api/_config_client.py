"""The configuration endpoints, for the CLI (a part of :class:`ApiClient`'s session)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from corral.api._client import ApiClient
from corral.config import (
    HISTORY,
    ConfigDiff,
    ConfigHistoryEntry,
    ConfigInstance,
    ConfigOutcome,
    ConfigShown,
)

_OUTCOME = TypeAdapter(ConfigOutcome)
_SHOWN = TypeAdapter(ConfigShown)
_DIFF = TypeAdapter(ConfigDiff)
_INSTANCES = TypeAdapter(list[ConfigInstance])


class ConfigClient:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    # Answers are parsed: an answer of another shape is an ApiError.
    def show(self, service: str | None = None, version: int | None = None) -> ConfigShown:
        params = _params(service=service, version=version)
        return self._api._parsed(_SHOWN, "GET", "/config", params=params)

    def history(self, service: str | None = None) -> list[ConfigHistoryEntry]:
        params = _params(service=service)
        return self._api._parsed(HISTORY, "GET", "/config/history", params=params)

    def diff(self, a: int, b: int, service: str | None = None) -> ConfigDiff:
        params = _params(a=a, b=b, service=service)
        return self._api._parsed(_DIFF, "GET", "/config/diff", params=params)

    def instances(self) -> list[ConfigInstance]:
        return self._api._parsed(_INSTANCES, "GET", "/config/instances")

    # ``change``: author, message and if_version (compare-and-swap), as the API names them.
    def set(self, service: str, values: dict[str, str], **change: Any) -> ConfigOutcome:
        body = {"values": values, **_params(**change)}
        return self._outcome(f"/config/services/{service}/set", body)

    def unset(self, service: str, keys: list[str], **change: Any) -> ConfigOutcome:
        body = {"keys": keys, **_params(**change)}
        return self._outcome(f"/config/services/{service}/unset", body)

    def rollback(self, version: int, **change: Any) -> ConfigOutcome:
        body = {"version": version, **_params(**change)}
        return self._outcome("/config/rollback", body)

    def apply(self, **change: Any) -> ConfigOutcome:
        return self._outcome("/config/apply", _params(**change))

    def _outcome(self, path: str, body: dict[str, Any]) -> ConfigOutcome:
        """A change's answer, parsed (an answer of another shape is an ApiError)."""
        return self._api._parsed(_OUTCOME, "POST", path, json=body)


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
