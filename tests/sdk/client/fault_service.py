"""A fault-injecting upstream for client tests: ``python fault_service.py PORT [NAME]``.

Every path except ``/admin/*`` is "work": it counts the attempt, records the headers and
the time it arrived, then answers according to the mode set by ``POST /admin/mode``:
``{"mode": "ok"}``, ``{"mode": "fail", "status": 503}``, ``{"mode": "hang"}`` (never
answers until the mode changes) or ``{"mode": "slow", "delay": 0.3}``. A ``"count": N``
with ``fail`` fails only the next N calls, then answers ok again (a provider recovering).
``GET /admin/stats`` reports attempts, in-flight work and the last request's headers;
``POST /admin/reset`` zeroes the counters and sets the mode back to ok.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from aiohttp import web


class Fault:
    def __init__(self, name: str) -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.mode: dict[str, Any] = {"mode": "ok"}
        self.attempts = 0
        self.by_method: dict[str, int] = {}
        self.in_flight = 0
        self.last: dict[str, Any] = {}
        self.changed = asyncio.Event()

    async def work(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self.by_method[request.method] = self.by_method.get(request.method, 0) + 1
        self.last = {"headers": dict(request.headers), "received": time.time()}
        self.in_flight += 1
        try:
            while True:
                mode = self.mode
                if mode["mode"] == "hang":
                    changed = self.changed
                    await changed.wait()
                    continue
                if mode["mode"] == "slow":
                    await asyncio.sleep(float(mode.get("delay", 0.2)))
                    mode = {"mode": "ok"}
                if mode["mode"] == "fail":
                    if "count" in mode:
                        if mode["count"] <= 0:
                            return web.json_response({"instance": self.name, "path": request.path})
                        mode["count"] -= 1
                    return web.json_response({"error": "injected"}, status=int(mode["status"]))
                response = web.json_response({"instance": self.name, "path": request.path})
                # a cookie on every answer: callers must not send it back on later calls
                response.set_cookie("upstream-session", str(self.attempts))
                return response
        finally:
            self.in_flight -= 1

    async def set_mode(self, request: web.Request) -> web.Response:
        self.mode = await request.json()
        self.changed.set()
        self.changed = asyncio.Event()
        return web.json_response(self.mode)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": self.name,
                "attempts": self.attempts,
                "by_method": self.by_method,
                "in_flight": self.in_flight,
                "last": self.last,
                "mode": self.mode,
            }
        )

    async def do_reset(self, _: web.Request) -> web.Response:
        self.changed.set()
        self.reset()
        return web.json_response({"ok": True})


def main() -> None:
    port = int(sys.argv[1])
    fault = Fault(sys.argv[2] if len(sys.argv) > 2 else f"fault-{port}")
    app = web.Application()
    app.router.add_post("/admin/mode", fault.set_mode)
    app.router.add_get("/admin/stats", fault.stats)
    app.router.add_post("/admin/reset", fault.do_reset)
    app.router.add_route("*", "/{tail:.*}", fault.work)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
