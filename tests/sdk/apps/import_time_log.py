"""A service that logs a secret while its module is imported (before the service starts)."""

import os

from corral.sdk import Service, get_logger

get_logger().info("module loading", key=os.environ["PLANTED_KEY"])
svc = Service("import-time")
svc.log.warning("configured with", key=os.environ["PLANTED_KEY"])


@svc.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}
