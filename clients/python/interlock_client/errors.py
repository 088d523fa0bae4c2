"""The one exception the client raises for a failed RPC: :class:`InterlockError`.

The server answers errors with a gRPC status code and a ``google.rpc.Status``
in the trailing metadata carrying an ``ErrorInfo`` (reason, domain, metadata)
and, for bad input, a ``BadRequest`` listing every offending field. This
module reads them back into plain attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class InterlockError(Exception):
    """A failed call to the Interlock server.

    Attributes:
        code: the gRPC status code (``grpc.StatusCode``).
        message: the server's message, for people.
        reason: the ``ErrorInfo`` reason (for example ``"RESULT_ALREADY_REPORTED"``),
            or ``""`` when the server sent none (e.g. the server could not be reached).
        domain: the ``ErrorInfo`` domain (``"interlock.v1"``), or ``""``.
        metadata: the ``ErrorInfo`` metadata.
        field_violations: ``(field, description)`` for every offending request field.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = dict(metadata or {})
        self.field_violations = [(str(f), str(d)) for f, d in field_violations]

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> InterlockError:
        """Build the error from a failed call (``grpc.aio.AioRpcError`` or a sync ``grpc.Call``)."""
        code_fn = getattr(error, "code", None)
        details_fn = getattr(error, "details", None)
        code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.UNKNOWN
        message = (details_fn() if callable(details_fn) else None) or ""
        reason = domain = ""
        metadata: dict[str, str] = {}
        violations: list[tuple[str, str]] = []
        try:
            status = rpc_status.from_call(error)
        except (ValueError, AttributeError, TypeError):
            status = None
        if status is not None:
            message = status.message or message
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations.extend((v.field, v.description) for v in bad.field_violations)
        return cls(
            code,
            message,
            reason=reason,
            domain=domain,
            metadata=metadata,
            field_violations=violations,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _restore,
            (
                self.code,
                self.message,
                self.reason,
                self.domain,
                self.metadata,
                self.field_violations,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"InterlockError(code={self.code.name}, message={self.message!r}, "
            f"reason={self.reason!r}, field_violations={self.field_violations!r})"
        )


def _restore(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    domain: str,
    metadata: dict[str, str],
    field_violations: list[tuple[str, str]],
) -> InterlockError:
    return InterlockError(
        code,
        message,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=field_violations,
    )


__all__ = ["InterlockError"]
