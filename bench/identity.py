"""What verifying the caller's token in the service costs (corral.sdk.identity).

One SDK service, one handler (``GET /me`` with an ``OptionalCaller``), served four ways,
side by side in one run, rounds rotating which side goes first:

- ``off``: no ``CORRAL_IDENTITY``, requests without a token: what a request pays for
  the identity layer when there is nothing to verify (claim headers are still dropped);
- ``cached``: the gateway's provider configured, every request with the same valid
  token: the steady state (a user's token serves many requests; the verdict is
  remembered until it expires);
- ``uncached_rs256`` / ``uncached_es256``: every request a token never seen before
  (more tokens than the verdict cache holds, in turn): a signature check per request,
  the worst case.

Load: wrk (1 thread, separate process). The figure that holds on a shared machine is the
server process's CPU time per request (/proc); req/s are reported too. The same four
cases are also timed in process, through the identity layer alone (its ASGI middleware
in front of an app that answers nothing, CPU time of this process): what the layer
itself costs, without HTTP, the server and the neighbours' noise. Results:
bench/results/identity.json.

    uv run python bench/identity.py [--duration 3] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import free_port, write_result
from sdk_overhead import measured, wait_ready, wrk

from corral.sdk import Service
from corral.sdk.identity import OptionalCaller

HERE = Path(__file__).resolve().parent
ISSUER, AUDIENCE = "https://auth.bench", "bench"
DISTINCT_TOKENS = 10_500
"""More than the verifier's verdict cache (10,000, oldest out first): taken in turn,
every token is a miss."""


def serve(port: int) -> None:
    """Child process: the service on 127.0.0.1:port (CORRAL_IDENTITY from the parent)."""
    os.environ.update(HOST="127.0.0.1", PORT=str(port))
    from corral.sdk.serve import run

    svc = Service("bench")

    @svc.get("/me")
    async def me(caller: OptionalCaller) -> dict[str, str | None]:
        return {"subject": caller.subject if caller else None}

    sys.exit(run(svc))


def keys(folder: Path) -> dict[str, Any]:
    """An RSA and an EC key, their JWKS file, and the CORRAL_IDENTITY naming it."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = [
        {**json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), "kid": "r", "alg": "RS256"},
        {**json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "e", "alg": "ES256"},
    ]
    (folder / "jwks.json").write_text(json.dumps({"keys": jwks}))
    provider = {
        "name": "main",
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "jwks": {"file": str(folder / "jwks.json")},
    }

    def token(key: Any, alg: str, kid: str, n: int) -> str:
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"user-{n}",
            "exp": int(time.time()) + 3600,
        }
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    return {
        "env": {"CORRAL_IDENTITY": json.dumps({"providers": [provider]})},
        "token": lambda alg, n: token(
            *((rsa_key, "RS256", "r") if alg == "RS256" else (ec_key, "ES256", "e")), n
        ),
    }


def in_process(env: dict[str, str], tokens: dict[str, list[str]]) -> dict[str, float]:
    """CPU microseconds per request through IdentityMiddleware alone, per case."""
    import asyncio

    from corral.sdk import get_logger
    from corral.sdk.identity import IdentityConfig
    from corral.sdk.identity._middleware import IdentityMiddleware
    from corral.sdk.identity._setup import build_verifier

    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    async def measure(verifier: Any, sent: list[str]) -> float:
        layer = IdentityMiddleware(app, verifier=lambda: verifier)
        base = [(b"host", b"bench"), (b"accept", b"*/*"), (b"user-agent", b"wrk")]
        scopes = [
            {"type": "http", "headers": [*base, (b"authorization", b"Bearer " + t.encode())]}
            if t
            else {"type": "http", "headers": list(base)}
            for t in sent
        ]
        for scope in scopes[:200]:  # keys fetched, code warm
            await layer(dict(scope), None, None)  # type: ignore[arg-type]
        began = time.process_time()
        for scope in scopes:
            await layer(dict(scope), None, None)  # type: ignore[arg-type]
        return round((time.process_time() - began) / len(scopes) * 1e6, 2)

    async def main() -> dict[str, float]:
        config = IdentityConfig.model_validate_json(env["CORRAL_IDENTITY"])

        def verifier() -> Any:
            return build_verifier(config, client_for=lambda _: None, log=get_logger())  # type: ignore[arg-type,return-value]

        return {
            "off": await measure(None, [""] * 20_000),
            "cached": await measure(verifier(), tokens["cached"] * 20_000),
            "uncached_rs256": await measure(verifier(), tokens["uncached_rs256"]),
            "uncached_es256": await measure(verifier(), tokens["uncached_es256"]),
        }

    return asyncio.run(main())


def script(folder: Path, name: str, tokens: list[str]) -> Path:
    """A wrk script sending ``tokens`` in turn (one when there is one)."""
    path = folder / f"{name}.lua"
    listed = ",\n".join(f'"{t}"' for t in tokens)
    path.write_text(
        f"tokens = {{\n{listed}\n}}\n"
        "i = 0\n"
        "request = function()\n"
        "  i = i % #tokens + 1\n"
        '  return wrk.format("GET", "/me", {["Authorization"] = "Bearer " .. tokens[i]})\n'
        "end\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="corral-bench-identity-") as tmp:
        folder = Path(tmp)
        made = keys(folder)
        print(f"signing {2 * DISTINCT_TOKENS} tokens ...", file=sys.stderr)
        tokens = {
            "cached": [made["token"]("RS256", 0)],
            "uncached_rs256": [made["token"]("RS256", n) for n in range(DISTINCT_TOKENS)],
            "uncached_es256": [made["token"]("ES256", n) for n in range(DISTINCT_TOKENS)],
        }
        layer = in_process(made["env"], tokens)
        print("in process", layer, file=sys.stderr)
        scripts: dict[str, Path | None] = {"off": None}
        scripts.update({side: script(folder, side, sent) for side, sent in tokens.items()})
        sides = list(scripts)
        runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
        for round_ in range(args.rounds):
            order = sides[round_ % len(sides) :] + sides[: round_ % len(sides)]
            for side in order:
                port = free_port()
                env = {**os.environ, **({} if side == "off" else made["env"])}
                proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "serve", str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
                try:
                    base = f"http://127.0.0.1:{port}"
                    wait_ready(base + "/readyz")
                    wrk(
                        base + "/me", duration=1, connections=args.connections, script=scripts[side]
                    )
                    result = measured(
                        proc.pid,
                        base + "/me",
                        duration=args.duration,
                        connections=args.connections,
                        script=scripts[side],
                    )
                finally:
                    proc.terminate()
                    proc.wait(10)
                if result["non_2xx"]:
                    raise SystemExit(f"{side}: {result['non_2xx']:.0f} answers were not 2xx")
                runs[side].append(result)
                print(side, result, file=sys.stderr)

    def median(side: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[side]), 1)

    summary = {
        side: {key: median(side, key) for key in ("rps", "cpu_us_per_req", "p50_ms", "p99_ms")}
        for side in sides
    }
    base_cpu = summary["off"]["cpu_us_per_req"]
    for side in sides:
        cpu = summary[side]["cpu_us_per_req"]
        summary[side]["cpu_added_us_per_req"] = round(cpu - base_cpu, 1)
        summary[side]["rps_vs_off"] = round(summary[side]["rps"] / summary["off"]["rps"], 3)
    out = {
        "benchmark": "identity",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1m_before_after": [
                round(load_before[0], 1),
                round(os.getloadavg()[0], 1),
            ],
        },
        "service": "corral.sdk Service, GET /me with an OptionalCaller, python -m corral.sdk.serve",
        "load_generator": f"wrk 1 thread, {args.connections} connections, 127.0.0.1",
        "duration_s": args.duration,
        "rounds": args.rounds,
        "sides": {
            "off": "no CORRAL_IDENTITY, no token",
            "cached": "one RS256 token on every request (verdict remembered)",
            "uncached_rs256": f"{DISTINCT_TOKENS} RS256 tokens in turn (a verification each)",
            "uncached_es256": f"{DISTINCT_TOKENS} ES256 tokens in turn (a verification each)",
        },
        "summary_median_of_rounds": summary,
        "identity_layer_in_process_cpu_us_per_request": layer,
        "runs": runs,
    }
    path = write_result("identity.json", out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        main()
