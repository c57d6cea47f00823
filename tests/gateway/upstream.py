"""A tiny upstream for gateway tests: echoes the request as JSON; serves a JWKS file.

Run as ``python upstream.py PORT NAME [JWKS_FILE]``. ``/status/<code>`` answers that
status; ``/ws`` is a WebSocket echo; ``/__ready`` is its readiness check.
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
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
