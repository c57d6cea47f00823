"""A tiny upstream for gateway tests: echoes the request as JSON; serves a JWKS file.

Run as ``python upstream.py PORT NAME [JWKS_FILE]``. ``/status/<code>`` answers that
status; ``/ws`` is a WebSocket echo; ``/__ready`` is its readiness check. The JWKS file is
read on every request, so a test rotates keys by replacing it. Faults for health-check and
outlier tests: ``POST /__control/unhealthy`` makes ``/readyz`` answer 503, ``POST
/__control/failing`` makes every other request answer 500, ``POST /__control/ok`` undoes
both; ``/__stats`` counts the requests served (health checks excluded).
"""

from __future__ import annotations

import pathlib
import sys

from aiohttp import WSMsgType, web


def main() -> None:
    if sys.argv[1] == "env":  # under the orchestrator: the runtime contract
        import os

        port, name = int(os.environ["PORT"]), os.environ["CORRAL_INSTANCE"]
    else:
        port, name = int(sys.argv[1]), sys.argv[2]
    jwks = pathlib.Path(sys.argv[3]) if len(sys.argv) > 3 else None

    state = {"unhealthy": False, "failing": False, "served": 0}

    async def control(request: web.Request) -> web.Response:
        fault = request.match_info["fault"]
        state["unhealthy"] = fault == "unhealthy"
        state["failing"] = fault == "failing"
        return web.json_response(state)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state)

    async def readyz(request: web.Request) -> web.Response:
        return web.Response(status=503 if state["unhealthy"] else 200)

    async def jwks_handler(request: web.Request) -> web.Response:
        assert jwks is not None
        return web.Response(text=jwks.read_text(), content_type="application/json")

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(f"{name}:{msg.data}")
        return ws

    async def echo(request: web.Request) -> web.Response:
        state["served"] += 1
        if state["failing"]:
            return web.json_response({"name": name}, status=500)
        if request.path.startswith("/status/"):
            return web.json_response({"name": name}, status=int(request.path.split("/")[2]))
        body = await request.read()
        return web.json_response(
            {
                "name": name,
                "port": port,
                "method": request.method,
                "path": request.path_qs,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body_size": len(body),
            }
        )

    app = web.Application(client_max_size=64 * 2**20)
    if jwks is not None:
        app.router.add_get("/.well-known/jwks.json", jwks_handler)
    app.router.add_get("/ws", ws_handler)
    app.router.add_post("/__control/{fault}", control)
    app.router.add_get("/__stats", stats)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
