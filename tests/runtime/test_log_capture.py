"""LogStore.capture: an instance's pipe, read by the chunk, stored line by line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from corral.runtime.logs import _LINE_LIMIT, TOO_LONG, LogLine, LogStore

pytestmark = pytest.mark.timeout(30)


class Chunks:
    """A pipe that yields these chunks, one per read, then its end."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def read(self, n: int = -1) -> bytes:
        assert n > 0
        return self._chunks.pop(0) if self._chunks else b""


LONG = b"x" * (_LINE_LIMIT + 1)

CASES = [
    ("one line per chunk", [b"a\n", b"b\n"], ["a", "b"]),
    ("many lines in a chunk", [b"a\nb\nc\n"], ["a", "b", "c"]),
    ("a line split across chunks", [b"a\nb", b"c", b"d\ne\n"], ["a", "bcd", "e"]),
    ("empty lines kept", [b"a\n\n\nb\n"], ["a", "", "", "b"]),
    ("a last line without newline", [b"a\nb"], ["a", "b"]),
    ("CRLF endings", [b"a\r\nb\r\n"], ["a", "b"]),
    ("CR and LF in different chunks", [b"a\r", b"\nb\r\n"], ["a", "b"]),
    ("a character split across chunks", ["é\nñ".encode()[:1], "é\nñ\n".encode()[1:]], ["é", "ñ"]),
    ("invalid UTF-8 replaced", [b"a\xff\n"], ["a\ufffd"]),
    ("a long line in one chunk", [b"a\n" + LONG + b"\nb\n"], ["a", TOO_LONG, "b"]),
    ("a long line over many chunks", [b"a\n", LONG[:600_000], LONG[600_000:], b"\nb\n"],
     ["a", TOO_LONG, "b"]),
    ("a long line split before its newline", [b"a\n" + LONG, b"yy\nb\n"], ["a", TOO_LONG, "b"]),
    ("a long last line without newline", [LONG], [TOO_LONG]),
    ("a line exactly at the limit kept", [b"x" * _LINE_LIMIT + b"\n"], ["x" * _LINE_LIMIT]),
]  # fmt: skip


@pytest.mark.parametrize(("chunks", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_capture_stores_each_line_as_written(
    tmp_path: Path, chunks: list[bytes], expected: list[str]
) -> None:
    """Whatever the chunk boundaries, every line is stored once, whole, in order; a line
    over the limit becomes one marker and the lines around it are intact."""
    store = LogStore(tmp_path)
    tapped: list[str] = []
    store.taps.append(lambda line: tapped.append(line.line))
    await store.capture(Chunks(chunks), service="web", instance="web-1", stream="stdout")
    assert [line.line for line in store.read()] == expected
    assert tapped == expected
    assert store.recent("web-1", 100) == expected[-50:]


async def test_captured_lines_are_encoded_as_every_reader_expects(tmp_path: Path) -> None:
    """Each stored line is byte for byte what orjson makes of LogLine.to_json(), for text
    that needs escaping too, and lines read together share their arrival time."""
    texts = ['{"event": "request", "path": "/a\\"b"}', "tab\there", "ünï\u2028code", "\x00"]
    before = time.time()
    store = LogStore(tmp_path)
    raw = "".join(text + "\n" for text in texts).encode()
    await store.capture(Chunks([raw]), service="web", instance="web-1", stream="stderr")
    store.flush()
    stored = store.path("web-1").read_bytes().splitlines()
    lines = [LogLine.from_json(orjson.loads(row)) for row in stored]
    assert [line.line for line in lines] == texts
    assert len({line.t for line in lines}) == 1
    assert before <= lines[0].t <= time.time()
    assert stored == [orjson.dumps(line.to_json()) for line in lines]
    assert {line.stream for line in lines} == {"stderr"}


async def test_captured_lines_are_redacted_and_reach_followers(tmp_path: Path) -> None:
    """A secret the instance holds is redacted in the file, the taps and the followers,
    in a line read with others; another instance's lines are left alone."""
    store = LogStore(tmp_path)
    store.secrets.add("web-1", ["hunter22"])
    got: list[LogLine] = []

    async def follow() -> None:
        async for line in store.follow():
            got.append(line)
            if len(got) == 3:
                return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0)
    await store.capture(
        Chunks([b"a\npassword=hunter22\nc\n"]), service="web", instance="web-1", stream="stdout"
    )
    await asyncio.wait_for(follower, 5)
    expected = ["a", "password=**********", "c"]
    assert [line.line for line in got] == expected
    assert [line.line for line in store.read()] == expected
    assert "hunter22" not in store.path("web-1").read_text()
    store.append(LogLine(1.0, "api", "api-1", "stdout", "hunter22"))
    assert store.recent("api-1") == ["hunter22"]


async def test_capture_reads_a_real_pipe_to_its_end(tmp_path: Path) -> None:
    """Many lines from a real process, in whatever pieces the pipe delivers: all stored."""
    count = 20_000
    proc = await asyncio.create_subprocess_exec(
        "python3",
        "-c",
        f"import sys\nfor n in range({count}): sys.stdout.write(f'line {{n}}\\n')",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    store = LogStore(tmp_path)
    await store.capture(proc.stdout, service="web", instance="web-1", stream="stdout")
    await proc.wait()
    assert [line.line for line in store.read()] == [f"line {n}" for n in range(count)]
