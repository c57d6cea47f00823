"""leaky: a service that does everything wrong with its secret, for the planted-secret
test: prints it at import (stdout and stderr), logs it before the SDK's logging is set
up, prints it in a handler, and raises it in an exception (a span event)."""

from __future__ import annotations

import os
import sys

from corral.sdk import Service

KEY = os.environ["PAYMENT_KEY"]

print(f"import-time print {KEY}", flush=True)
sys.stderr.write(f"import-time stderr {KEY}\n")
sys.stderr.flush()

svc = Service("leaky")
svc.log.info("import-time log", key=KEY)


@svc.get("/echo")
async def echo() -> dict[str, str]:
    print(f"handler print {KEY}", flush=True)
    return {"ok": "yes"}


@svc.get("/boom")
async def boom() -> dict[str, str]:
    raise RuntimeError(f"the provider refused key {KEY}")
