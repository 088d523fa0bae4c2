"""Interlock's exceptions, each naming the gRPC status code it maps to.

    InterlockError                 INTERNAL (the root; never leaks details)
    ├── InvalidArgument            INVALID_ARGUMENT (bad input; carries field violations)
    ├── NotFound                   NOT_FOUND (unknown tool, agent, decision)
    ├── AlreadyExists              ALREADY_EXISTS (a result reported twice)
    ├── FailedPrecondition         FAILED_PRECONDITION (a call not valid in this state)
    │   └── PolicyLoadError        a policy set that does not compile or check
    ├── PermissionDenied           PERMISSION_DENIED
    ├── ResourceExhausted          RESOURCE_EXHAUSTED
    ├── DeadlineExceeded           DEADLINE_EXCEEDED (a playground evaluation past its time limit)
    ├── Unavailable                UNAVAILABLE (the policy engine cannot be reached)
    ├── Unimplemented              UNIMPLEMENTED (a method the server does not serve)
    └── PolicyEvaluationError      INTERNAL (an engine failed to evaluate; decisions fail closed)

The error-mapping interceptor (:mod:`interlock.api.interceptors`) turns these
into a ``google.rpc.Status`` with an ``ErrorInfo``, for bad input a
``BadRequest`` listing every offending field, and, when the error names a
``retry_delay`` (a rate limit), a ``RetryInfo`` with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

DOMAIN = "interlock.v1"


@dataclass(frozen=True)
class FieldViolation:
    """One offending field of a request: its path and what is wrong with it."""

    field: str
    description: str


class InterlockError(Exception):
    """The root of Interlock's errors."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: list[FieldViolation] | None = None,
        metadata: dict[str, str] | None = None,
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.violations = list(violations or [])
        self.metadata = dict(metadata or {})
        self.retry_delay = retry_delay
        """Seconds after which the call may succeed if retried (a rate limit's
        wait); sent as ``google.rpc.RetryInfo``, where client libraries look."""


class InvalidArgument(InterlockError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    @classmethod
    def of(cls, violations: list[FieldViolation], *, reason: str | None = None) -> InvalidArgument:
        """One error for several violations; the message names every field."""
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(text, violations=violations, reason=reason)

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        return cls.of([FieldViolation(field, description)], reason=reason)


class NotFound(InterlockError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(InterlockError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(InterlockError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class PolicyLoadError(FailedPrecondition):
    """A policy set was refused: it does not parse, compile or pass its checks."""

    reason = "POLICY_INVALID"


class PermissionDenied(InterlockError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unauthenticated(InterlockError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class ResourceExhausted(InterlockError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(InterlockError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class Unavailable(InterlockError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class OutOfRange(InterlockError):
    code = grpc.StatusCode.OUT_OF_RANGE
    reason = "OUT_OF_RANGE"


class Unimplemented(InterlockError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "UNIMPLEMENTED"


class PolicyEvaluationError(InterlockError):
    """An engine could not evaluate the policy. Decisions fail closed on it."""

    reason = "POLICY_EVALUATION_FAILED"


__all__ = [
    "DOMAIN",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "InterlockError",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "PolicyEvaluationError",
    "PolicyLoadError",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]
