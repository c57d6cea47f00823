"""The last N traces, assembled per trace id across services, in memory.

Spans of one trace arrive from several services in separate export batches, in any
order; the store keeps them under their trace id and forgets the trace touched least
recently once more than ``max_traces`` are held. A trace keeps at most
``max_spans`` spans (a runaway loop would otherwise hold all memory); the rest are
counted as dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from corral.telemetry._otlp import SpanRecord

__all__ = ["TraceStore"]


@dataclass
class _Trace:
    spans: dict[str, SpanRecord] = field(default_factory=dict)
    dropped: int = 0


class TraceStore:
    """One event loop; not thread-safe."""

    def __init__(self, *, max_traces: int = 500, max_spans: int = 1000) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self.received = 0
        """Spans received since start (kept or not)."""

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, spans: Iterable[SpanRecord]) -> None:
        for span in spans:
            self.received += 1
            trace = self._traces.get(span.trace_id)
            if trace is None:
                trace = self._traces[span.trace_id] = _Trace()
            else:
                self._traces.move_to_end(span.trace_id)
            if span.span_id in trace.spans or len(trace.spans) < self.max_spans:
                trace.spans[span.span_id] = span
            else:
                trace.dropped += 1
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)

    def list(self, *, limit: int = 50, service: str | None = None) -> list[dict[str, Any]]:
        """Summaries of the most recently started traces first; with ``service``, only
        traces that have a span of it."""
        summaries = [
            _summary(trace_id, trace)
            for trace_id, trace in self._traces.items()
            if service is None or any(s.service == service for s in trace.spans.values())
        ]
        summaries.sort(key=lambda s: s["start"], reverse=True)
        return summaries[:limit]

    def get(self, trace_id: str) -> dict[str, Any] | None:
        """One trace: its summary and every span, in start order."""
        trace = self._traces.get(trace_id.lower())
        if trace is None:
            return None
        spans = sorted(trace.spans.values(), key=lambda s: (s.start_ns, s.span_id))
        return {**_summary(trace_id.lower(), trace), "spans": [s.to_json() for s in spans]}


def _summary(trace_id: str, trace: _Trace) -> dict[str, Any]:
    spans = list(trace.spans.values())
    start = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    # The root: the span whose parent is not here (the first such by start time); a
    # trace whose root has not arrived yet shows its earliest span instead.
    orphans = [s for s in spans if s.parent_span_id is None or s.parent_span_id not in trace.spans]
    root = min(orphans or spans, key=lambda s: s.start_ns)
    return {
        "trace_id": trace_id,
        "name": root.name,
        "service": root.service,
        "start": start / 1e9,
        "duration_ms": round((end - start) / 1e6, 3),
        "span_count": len(spans),
        "services": sorted({s.service for s in spans}),
        "errors": sum(1 for s in spans if s.status == "error"),
        "complete": root.parent_span_id is None,
        "dropped": trace.dropped,
    }
