"""The control plane's API against bodies it must not read: a real `corral up -d`, a raw
socket sending chunked bodies (no content-length) far over every limit, and the server
process's resident memory sampled (psutil) all the while."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psutil
import pytest
from test_cli_system import FIXTURE, corral, detached

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MIB = 1024 * 1024
CHUNK = 256 * 1024
SEND_BUFFER = 64 * 1024
"""The client's own socket buffer, kept small so what was sent is what the server got."""

MANIFEST = f"""name: limits
services:
  svc:
    command: [{sys.executable}, {FIXTURE}]
    readiness: /readyz
    database: none
"""


@dataclass
class Api:
    host: str
    port: int
    pid: int
    admin: str
    ingest: str


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with detached(tmp_path_factory.mktemp("limits"), MANIFEST) as folder:
        info = json.loads((folder / ".corral" / "api.json").read_text())
        admin = (folder / ".corral" / "token").read_text().strip()
        status = json.loads(corral("status", "--json", cwd=folder).stdout)
        instance = next(i for i in status["instances"] if i["service"] == "svc")
        # The ingest token as an instance holds it: in its environment.
        headers = psutil.Process(instance["pid"]).environ()["OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
        ingest = unquote(headers.split("=", 1)[1]).removeprefix("Bearer ")
        url = urlsplit(info["url"])
        assert url.hostname is not None
        assert url.port is not None
        yield Api(url.hostname, url.port, int(info["pid"]), admin, ingest)


class PeakRss:
    """Samples a process's resident set size until stopped; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.002)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@dataclass
class Answer:
    status: int | None
    """None: the server never answered before the whole body was sent."""
    sent: int
    headers: dict[str, str]


def send_chunked(api: Api, path: str, total: int, headers: dict[str, str]) -> Answer:
    """POST ``total`` bytes in chunks with no content-length, stopping as soon as the
    server answers (or closes); how much was sent by then."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    sock.settimeout(30)
    sock.connect((api.host, api.port))
    head = [f"POST {path} HTTP/1.1", f"host: {api.host}:{api.port}", "transfer-encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
    sent = 0
    received = b""
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it closed on us
            while sent < total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(chunk)
                sent += CHUNK
            else:
                sock.sendall(b"0\r\n\r\n")
        # What the server answered before closing is still in our receive buffer.
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in received:
                part = sock.recv(65536)
                if not part:
                    break
                received += part
    finally:
        sock.close()
    return _answer(received, sent)


def _answer(raw: bytes, sent: int) -> Answer:
    if not raw:
        return Answer(None, sent, {})
    head, _, _ = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return Answer(status, sent, {k.lower(): v for k, v in fields.items()})


def test_bodies_over_every_limit_are_refused_early_and_memory_stays_bounded(api: Api) -> None:
    """Chunked bodies far over every limit: no token (scale, the dashboard login), the
    admin token and the ingest token. Each answer (401/403/413 problem+json, connection
    closed) comes before most of the body was sent, and the server's resident memory
    grows by less than the largest limit (16 MiB) plus a margin."""
    admin = {"authorization": f"Bearer {api.admin}", "content-type": "application/json"}
    origin = {"origin": f"http://{api.host}:{api.port}", "content-type": "application/json"}
    cases: list[tuple[str, dict[str, str], int, int, int]] = [
        # path, headers, bytes offered, expected status, at most sent by the answer
        ("/v1/services/svc/scale", {}, 64 * MIB, 401, 8 * MIB),
        ("/v1/dashboard/session", {}, 64 * MIB, 403, 8 * MIB),
        ("/v1/dashboard/session", origin, 64 * MIB, 413, 8 * MIB),
        ("/v1/services/svc/scale", admin, 64 * MIB, 413, 8 * MIB),
        (
            "/otlp/v1/traces",
            {"authorization": f"Bearer {api.ingest}", "content-type": "application/x-protobuf"},
            128 * MIB,
            413,
            16 * MIB + 40 * MIB,  # the limit, and what loopback buffers may hold meanwhile
        ),
    ]
    answers: list[tuple[str, Answer]] = []
    with PeakRss(api.pid) as rss:
        for path, headers, total, _, _ in cases:
            answers.append((path, send_chunked(api, path, total, headers)))
    for (path, _, total, status, at_most), (_, answer) in zip(cases, answers, strict=True):
        assert answer.status == status, (path, answer)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["connection"] == "close"
        assert answer.sent <= at_most < total, (path, answer.sent)
    print("FIG", rss.growth / MIB, [(p, a.status, a.sent / MIB) for p, a in answers])
    assert rss.growth < 48 * MIB, f"grew {rss.growth / MIB:.0f} MiB"
    # And the server still serves.
    ok = send_json(api, "/v1/status", admin)
    assert ok["system"] == "limits"


def send_json(api: Api, path: str, headers: dict[str, str]) -> Any:
    with socket.create_connection((api.host, api.port), timeout=10) as sock:
        head = [f"GET {path} HTTP/1.1", f"host: {api.host}:{api.port}", "connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        raw = b""
        while part := sock.recv(65536):
            raw += part
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    assert b" 200 " in head_bytes.split(b"\r\n", 1)[0], head_bytes
    return json.loads(body)
