"""Caller-side faults (``corral chaos calls CALLER TARGET``): latency or errors injected
by the calling service's own client, only on its calls to one target.

The control plane publishes the active faults on a small feed of its API
(:data:`corral.contract.CALL_FAULTS_WATCH_PATH`, server-sent events, read with the
discovery token an instance already has); :class:`FaultFeed` follows it and hands each
new set to the :class:`~corral.sdk.client.ClientHub`, which sets ``client.fault`` on the
clients of the faulted targets. Per attempt, a client with a fault:

1. checks the fault's expiry itself (an absolute time, the earlier of the control
   plane's ``expires_at`` and the time left counted from when the feed said it): a
   fault ends on time even when the control plane is gone and the feed with it;
2. rolls against ``percent``; a hit sleeps the delay (an attempt timeout shorter than the
   delay times out, as it would against a slow network), then either answers the
   abort status itself (:func:`injected_response`: a problem+json body, as a Corral
   service's own error, with the ``x-corral-chaos`` header) or sends the real request
   in the time left.

The policy sees what it would see from a real fault: the breaker hears a failed attempt,
retries and the retry budget apply, and a final error reaches the fallback.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from corral import contract
from corral.sdk._logging import get_logger
from corral.sdk.client._response import Response

if TYPE_CHECKING:
    import aiohttp

__all__ = ["CallFault", "FaultFeed", "faults_from", "injected_response"]


@dataclass(frozen=True, slots=True)
class CallFault:
    """One active caller-side fault on the calls to ``target``."""

    id: str
    target: str
    percent: int
    abort_status: int | None
    delay: float
    """Seconds added before the attempt (0: none)."""
    until: float
    """Unix time the fault ends at, enforced by the client itself."""

    def hits(self, roll: float) -> bool:
        """Whether an attempt with ``roll`` (uniform in [0, 1)) is faulted."""
        return roll * 100 < self.percent

    def describe(self) -> str:
        parts = [f"delay {self.delay * 1000:g}ms"] if self.delay else []
        parts += [f"abort {self.abort_status}"] if self.abort_status else []
        return " and ".join(parts)


def faults_from(
    payload: Mapping[str, Any], *, caller: str | None, now: float | None = None
) -> dict[str, CallFault]:
    """The faults of one feed event (``{"faults": [...]}``) that apply to ``caller``'s
    calls, by target, already-expired ones dropped. A fault's end is the earlier of its
    ``expires_at`` and ``remaining`` seconds from ``now``: a clock that differs from the
    control plane's cannot stretch it."""
    now = time.time() if now is None else now
    out: dict[str, CallFault] = {}
    for raw in payload.get("faults", ()):
        if caller is not None and raw.get("caller") != caller:
            continue
        until = float(raw["expires_at"])
        remaining = raw.get("remaining")
        if remaining is not None:
            until = min(until, now + float(remaining))
        if until <= now:
            continue
        delay_ms = raw.get("delay_ms")
        fault = CallFault(
            id=str(raw["id"]),
            target=str(raw["target"]),
            percent=int(raw.get("percent", 100)),
            abort_status=int(raw["abort_status"]) if raw.get("abort_status") else None,
            delay=float(delay_ms) / 1000 if delay_ms else 0.0,
            until=until,
        )
        out[fault.target] = fault
    return out


def injected_response(fault: CallFault, url: str, attempt: int) -> Response:
    """The answer a faulted attempt gets instead of the target's: the abort status with a
    problem+json body, as a Corral service answers its own errors."""
    status = fault.abort_status or 503
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "injected fault",
            "status": status,
            "detail": f"corral chaos {fault.id}: calls to {fault.target} answer {status}",
        }
    ).encode()
    headers = {
        "content-type": "application/problem+json",
        contract.CHAOS_HEADER: fault.id,
    }
    return Response(status, headers, body, url, attempt)


class FaultFeed:
    """Follows the control plane's feed of caller-side faults for one calling service and
    calls ``on_change`` with each new set (by target). Started only under a control
    plane (``CORRAL_DISCOVERY=registry+http://...``); a lost feed reconnects with backoff
    and keeps the faults it has, each ending at its own time."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        caller: str,
        on_change: Callable[[Mapping[str, CallFault]], None],
    ) -> None:
        self.url = base_url.rstrip("/")
        self.caller = caller
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._on_change = on_change
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger()
        self.faults: dict[str, CallFault] = {}

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        *,
        caller: str | None,
        on_change: Callable[[Mapping[str, CallFault]], None],
    ) -> FaultFeed | None:
        mode = environ.get(contract.DISCOVERY, "").strip()
        if not caller or not mode.startswith("registry+"):
            return None  # no control plane to follow (Kubernetes, Compose, tests)
        return cls(
            mode.removeprefix("registry+"),
            environ.get(contract.DISCOVERY_TOKEN),
            caller=caller,
            on_change=on_change,
        )

    def start(self) -> None:
        """Begin following (on the running loop); returns at once."""
        if self._task is not None:
            return
        import aiohttp

        from corral.sdk._sse import follow_forever

        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=None)
        )
        self._task = asyncio.get_running_loop().create_task(
            follow_forever(
                self._follow, what="chaos fault feed", url=self.url, initial=0.1, maximum=5.0
            ),
            name="corral-call-faults",
        )

    async def stop(self) -> None:
        from corral.sdk._sse import stop_following

        task, session, self._task, self._session = self._task, self._session, None, None
        await stop_following(task, session)

    async def _follow(self) -> None:
        from corral.sdk._sse import stream_events

        assert self._session is not None
        url = self.url + contract.CALL_FAULTS_WATCH_PATH
        async for event, data in stream_events(self._session, url, {"caller": self.caller}):
            if event == "faults":
                self.take(json.loads(data))

    def take(self, payload: Mapping[str, Any]) -> None:
        """Apply one feed event: the complete set of this caller's faults now."""
        faults = faults_from(payload, caller=self.caller)
        for target, fault in faults.items():
            if self.faults.get(target) != fault:
                self._log.warning(
                    "chaos: caller-side fault on calls",
                    experiment=fault.id,
                    target=target,
                    fault=fault.describe(),
                    percent=fault.percent,
                    seconds_left=round(fault.until - time.time(), 1),
                )
        for target, fault in self.faults.items():
            if target not in faults:
                self._log.info(
                    "chaos: caller-side fault lifted", experiment=fault.id, target=target
                )
        self.faults = faults
        self._on_change(faults)
