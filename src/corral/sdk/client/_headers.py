"""What every outgoing call carries besides the caller's own headers: the trace context,
the request id, the calling service's name and the identity of the request being served.

The same headers :func:`corral.sdk.inject_trace_headers` adds, written without the
propagator machinery (the client's fast path: see bench/client_overhead.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDict
from opentelemetry.trace import DEFAULT_TRACE_STATE, get_current_span

from corral import contract
from corral.sdk import _tracing
from corral.sdk._context import bearer_token_var, request_id_var

__all__ = ["context_headers"]

_TRACEPARENT = "traceparent"
_TRACESTATE = "tracestate"
_AUTHORIZATION = "authorization"
_FLAGS = tuple(f"-{flags:02x}" for flags in range(256))


def context_headers(
    headers: Mapping[str, str] | None, *, add_caller: bool, forward_identity: bool
) -> CIMultiDict[str]:
    """``headers`` plus, unless they set them already:

    - W3C ``traceparent``/``tracestate`` when a valid span is current (the text
      ``TraceContextTextMapPropagator`` writes);
    - the request id of the request being served;
    - with ``add_caller``, the process's service name (a client with a caller of its own
      sends it as a session default header instead, which needs no per-call work);
    - with ``forward_identity``, the verified bearer token of the request being served,
      so the callee sees the same caller (it verifies the token itself: see
      corral.sdk.identity).

    One CIMultiDict, which aiohttp takes without converting it.
    """
    out: CIMultiDict[str] = CIMultiDict(headers) if headers else CIMultiDict()
    ctx = get_current_span().get_span_context()
    if ctx.is_valid:
        # bytes.hex() of the ids: the same text as the propagator's "{:032x}"
        # formatting in under half the time
        out[_TRACEPARENT] = (
            f"00-{ctx.trace_id.to_bytes(16).hex()}-{ctx.span_id.to_bytes(8).hex()}"
            f"{_FLAGS[ctx.trace_flags & 0xFF]}"
        )
        state = ctx.trace_state
        # most spans share the empty default; its truth test is a Python __len__
        if state is not DEFAULT_TRACE_STATE and state:
            out[_TRACESTATE] = state.to_header()
    request_id = request_id_var.get()
    if request_id is not None:
        out.setdefault(contract.REQUEST_ID_HEADER, request_id)
    if add_caller:
        caller = _tracing._caller  # the SDK's own process-wide caller name (set_caller)
        if caller:
            out.setdefault(contract.CALLER_HEADER, caller[0])
    if forward_identity:
        token = bearer_token_var.get()
        if token is not None:
            out.setdefault(_AUTHORIZATION, "Bearer " + token)
    return out
