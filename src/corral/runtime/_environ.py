"""What a spawned process inherits from the orchestrator's environment, and which of its
variables hold secrets. Pure functions of mappings; the orchestrator applies them.

Two kinds of process, two rules:

- a **service instance** inherits the environment ``corral up`` runs in (a documented
  configuration layer) minus what is not its to see: contract variables a parent corral
  or a shell may have left there, the control plane's own credentials, the variables
  secrets are read from (the service that declares one gets the value under its own
  name), and OTLP headers unless the operator's own collector is where spans go;
- bytecode: an instance never runs with ``PYTHONDONTWRITEBYTECODE`` and no cache. Where
  the environment sets it, the instance gets ``PYTHONPYCACHEPREFIX`` under the system's
  ``.corral/`` instead, so the first start compiles once and every later start, replica
  and restart reads the cache. Measured (bench/startup.py): without any bytecode an
  instance's ``import corral.sdk`` costs about 3x the CPU. Why not compile at sync
  (``uv sync --compile-bytecode``): it covers site-packages only, not the services' own
  code nor an editable install, and it is the user's command, not ours; the prefix keeps
  what the user asked for (no ``__pycache__`` in their tree) and needs no step;
- a **component** (Envoy, nats-server) needs no credential at all: it gets an
  allow-list (program search path, locale, home, time zone, temporary directory) and
  where to listen, so a token or secret added to the environment later cannot reach it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from urllib.parse import unquote, urlsplit

from corral import contract

__all__ = [
    "BYTECODE_CACHE",
    "component_environment",
    "inherited_environment",
    "is_otlp_headers",
    "secret_values",
]

_COMPONENT_INHERITED = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"}
)
"""What a component inherits besides the ``LC_*`` locale variables."""

_USER_COLLECTOR = (contract.OTEL_ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""Where an operator points spans at a collector of their own."""

_URLS = (contract.DATABASE_URL, contract.NATS_URL)

BYTECODE_CACHE = "pycache"
"""The bytecode cache's folder in the system's state directory (``.corral/``)."""
"""Variables that may carry a password in their URL."""


def is_otlp_headers(name: str) -> bool:
    """``OTEL_EXPORTER_OTLP_HEADERS`` and the per-signal ``..._TRACES_HEADERS`` & co:
    credentials of a collector."""
    return name.startswith("OTEL_EXPORTER_OTLP_") and name.endswith("HEADERS")


def inherited_environment(
    environ: Mapping[str, str], *, withheld: Collection[str], bytecode_cache: str | None = None
) -> dict[str, str]:
    """What a service instance inherits from ``environ``; ``withheld``: variables no
    instance may see (the control plane's credentials, the sources of secrets);
    ``bytecode_cache``: where bytecode goes when ``environ`` forbids writing it (see the
    module docstring)."""
    own_collector = any(environ.get(name) for name in _USER_COLLECTOR)
    inherited = {
        key: value
        for key, value in environ.items()
        if key not in contract.ALL_VARIABLES
        and key not in withheld
        and not key.startswith(contract.SERVICE_URL_PREFIX)
        and (own_collector or not is_otlp_headers(key))
    }
    if bytecode_cache and inherited.get("PYTHONDONTWRITEBYTECODE"):
        del inherited["PYTHONDONTWRITEBYTECODE"]
        inherited.setdefault("PYTHONPYCACHEPREFIX", bytecode_cache)
    return inherited


def component_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What a component inherits from ``environ``: the allow-list only."""
    return {
        key: value
        for key, value in environ.items()
        if key in _COMPONENT_INHERITED or key.startswith("LC_")
    }


def secret_values(env: Mapping[str, str]) -> set[str]:
    """The values in an instance's environment nobody may see it print: its declared
    secrets (``CORRAL_SECRET_VARIABLES``), the tokens the contract hands it, the values
    of OTLP headers, and passwords inside its database and bus URLs."""
    found: set[str] = set()
    names = env.get(contract.SECRET_VARIABLES, "").split(",")
    found.update(env.get(name.strip(), "") for name in names if name.strip())
    found.update(env.get(name, "") for name in (contract.DISCOVERY_TOKEN, contract.CONFIG_TOKEN))
    for name, value in env.items():
        if is_otlp_headers(name):
            found.update(_header_values(value))
    for name in _URLS:
        password = _password(env.get(name, ""))
        if password:
            found.update({password, unquote(password)})
    return {value for value in found if value}


def _header_values(value: str) -> Iterable[str]:
    """``key=value,key2=value2`` (values percent-encoded, as the OTLP exporter reads
    them): each value, and the credential after an ``authorization`` scheme."""
    for pair in value.split(","):
        _, _, raw = pair.partition("=")
        decoded = unquote(raw).strip()
        yield decoded
        scheme, _, credential = decoded.partition(" ")
        if credential and scheme.lower() in ("bearer", "basic", "token"):
            yield credential.strip()


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password if "@" in url else None
    except ValueError:
        return None
