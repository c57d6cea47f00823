"""The configuration endpoints, for the CLI (a part of :class:`ApiClient`'s session)."""

from __future__ import annotations

from typing import Any

from corral.api._client import ApiClient


class ConfigClient:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def show(self, service: str | None = None, version: int | None = None) -> dict[str, Any]:
        params = _params(service=service, version=version)
        return dict(self._api._request("GET", "/config", params=params))

    def history(self, service: str | None = None) -> list[dict[str, Any]]:
        return list(self._api._request("GET", "/config/history", params=_params(service=service)))

    def diff(self, a: int, b: int, service: str | None = None) -> dict[str, Any]:
        params = _params(a=a, b=b, service=service)
        return dict(self._api._request("GET", "/config/diff", params=params))

    # ``change``: author, message and if_version (compare-and-swap), as the API names them.
    def set(self, service: str, values: dict[str, str], **change: Any) -> dict[str, Any]:
        body = {"values": values, **_params(**change)}
        return dict(self._api._request("POST", f"/config/services/{service}/set", json=body))

    def unset(self, service: str, keys: list[str], **change: Any) -> dict[str, Any]:
        body = {"keys": keys, **_params(**change)}
        return dict(self._api._request("POST", f"/config/services/{service}/unset", json=body))

    def rollback(self, version: int, **change: Any) -> dict[str, Any]:
        body = {"version": version, **_params(**change)}
        return dict(self._api._request("POST", "/config/rollback", json=body))

    def apply(self, **change: Any) -> dict[str, Any]:
        return dict(self._api._request("POST", "/config/apply", json=_params(**change)))


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
