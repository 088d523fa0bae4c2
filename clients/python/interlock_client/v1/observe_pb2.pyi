import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_DECISION: _ClassVar[EventKind]
    EVENT_KIND_STATE_TRANSITION: _ClassVar[EventKind]
    EVENT_KIND_CONFLICT: _ClassVar[EventKind]
    EVENT_KIND_DISPATCH: _ClassVar[EventKind]
    EVENT_KIND_RESULT: _ClassVar[EventKind]
    EVENT_KIND_ROLLBACK: _ClassVar[EventKind]
    EVENT_KIND_PLAN_FINISHED: _ClassVar[EventKind]
    EVENT_KIND_APPROVAL: _ClassVar[EventKind]
    EVENT_KIND_POLICY: _ClassVar[EventKind]
    EVENT_KIND_SIGNAL: _ClassVar[EventKind]
    EVENT_KIND_HEALTH: _ClassVar[EventKind]
    EVENT_KIND_ACCESS_DENIED: _ClassVar[EventKind]
    EVENT_KIND_GRANT: _ClassVar[EventKind]
    EVENT_KIND_TRUST: _ClassVar[EventKind]

class ApprovalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_STATE_UNSPECIFIED: _ClassVar[ApprovalState]
    APPROVAL_STATE_PENDING: _ClassVar[ApprovalState]
    APPROVAL_STATE_APPROVED: _ClassVar[ApprovalState]
    APPROVAL_STATE_DENIED: _ClassVar[ApprovalState]
    APPROVAL_STATE_EXPIRED: _ClassVar[ApprovalState]
    APPROVAL_STATE_USED: _ClassVar[ApprovalState]
    APPROVAL_STATE_CANCELLED: _ClassVar[ApprovalState]

class ApprovalResolution(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_RESOLUTION_UNSPECIFIED: _ClassVar[ApprovalResolution]
    APPROVAL_RESOLUTION_APPROVE: _ClassVar[ApprovalResolution]
    APPROVAL_RESOLUTION_DENY: _ClassVar[ApprovalResolution]

class SignalKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIGNAL_KIND_UNSPECIFIED: _ClassVar[SignalKind]
    SIGNAL_KIND_TOOL_RELIABILITY: _ClassVar[SignalKind]
    SIGNAL_KIND_APPROVAL_MISMATCH: _ClassVar[SignalKind]
    SIGNAL_KIND_EXECUTION_MODE_ANALYSIS: _ClassVar[SignalKind]
    SIGNAL_KIND_CONFLICT_PATTERN: _ClassVar[SignalKind]
    SIGNAL_KIND_VALIDATION_OUTCOME: _ClassVar[SignalKind]

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATUS_UNSPECIFIED: _ClassVar[HealthStatus]
    HEALTH_STATUS_HEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_DEGRADED: _ClassVar[HealthStatus]
    HEALTH_STATUS_UNHEALTHY: _ClassVar[HealthStatus]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_DECISION: EventKind
EVENT_KIND_STATE_TRANSITION: EventKind
EVENT_KIND_CONFLICT: EventKind
EVENT_KIND_DISPATCH: EventKind
EVENT_KIND_RESULT: EventKind
EVENT_KIND_ROLLBACK: EventKind
EVENT_KIND_PLAN_FINISHED: EventKind
EVENT_KIND_APPROVAL: EventKind
EVENT_KIND_POLICY: EventKind
EVENT_KIND_SIGNAL: EventKind
EVENT_KIND_HEALTH: EventKind
EVENT_KIND_ACCESS_DENIED: EventKind
EVENT_KIND_GRANT: EventKind
EVENT_KIND_TRUST: EventKind
APPROVAL_STATE_UNSPECIFIED: ApprovalState
APPROVAL_STATE_PENDING: ApprovalState
APPROVAL_STATE_APPROVED: ApprovalState
APPROVAL_STATE_DENIED: ApprovalState
APPROVAL_STATE_EXPIRED: ApprovalState
APPROVAL_STATE_USED: ApprovalState
APPROVAL_STATE_CANCELLED: ApprovalState
APPROVAL_RESOLUTION_UNSPECIFIED: ApprovalResolution
APPROVAL_RESOLUTION_APPROVE: ApprovalResolution
APPROVAL_RESOLUTION_DENY: ApprovalResolution
SIGNAL_KIND_UNSPECIFIED: SignalKind
SIGNAL_KIND_TOOL_RELIABILITY: SignalKind
SIGNAL_KIND_APPROVAL_MISMATCH: SignalKind
SIGNAL_KIND_EXECUTION_MODE_ANALYSIS: SignalKind
SIGNAL_KIND_CONFLICT_PATTERN: SignalKind
SIGNAL_KIND_VALIDATION_OUTCOME: SignalKind
HEALTH_STATUS_UNSPECIFIED: HealthStatus
HEALTH_STATUS_HEALTHY: HealthStatus
HEALTH_STATUS_DEGRADED: HealthStatus
HEALTH_STATUS_UNHEALTHY: HealthStatus

class Event(_message.Message):
    __slots__ = ("seq", "kind", "time", "plan_id", "step_id", "agent_id", "decision_id", "tool", "message", "payload")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: EventKind
    time: _timestamp_pb2.Timestamp
    plan_id: str
    step_id: str
    agent_id: str
    decision_id: str
    tool: str
    message: str
    payload: _struct_pb2.Struct
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_id: _Optional[str] = ..., step_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., tool: _Optional[str] = ..., message: _Optional[str] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("approval_id", "state", "decision_id", "plan_id", "step_id", "tool", "agent_id", "arguments_hash", "policy_revision", "requested_by", "approver_roles", "approvals_required", "approved_by", "created_at", "expires_at", "reason", "confidence", "escalation_level", "resolved_by", "resolved_at", "used_by_decision_id", "next_escalation_at")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_HASH_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ROLES_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    APPROVED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    USED_BY_DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_ESCALATION_AT_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    state: ApprovalState
    decision_id: str
    plan_id: str
    step_id: str
    tool: str
    agent_id: str
    arguments_hash: str
    policy_revision: str
    requested_by: str
    approver_roles: _containers.RepeatedScalarFieldContainer[str]
    approvals_required: int
    approved_by: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    reason: str
    confidence: float
    escalation_level: int
    resolved_by: str
    resolved_at: _timestamp_pb2.Timestamp
    used_by_decision_id: str
    next_escalation_at: _timestamp_pb2.Timestamp
    def __init__(self, approval_id: _Optional[str] = ..., state: _Optional[_Union[ApprovalState, str]] = ..., decision_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., step_id: _Optional[str] = ..., tool: _Optional[str] = ..., agent_id: _Optional[str] = ..., arguments_hash: _Optional[str] = ..., policy_revision: _Optional[str] = ..., requested_by: _Optional[str] = ..., approver_roles: _Optional[_Iterable[str]] = ..., approvals_required: _Optional[int] = ..., approved_by: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., confidence: _Optional[float] = ..., escalation_level: _Optional[int] = ..., resolved_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., used_by_decision_id: _Optional[str] = ..., next_escalation_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Signal(_message.Message):
    __slots__ = ("signal_id", "kind", "tool", "agent_id", "value", "evidence", "created_at")
    SIGNAL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    signal_id: str
    kind: SignalKind
    tool: str
    agent_id: str
    value: float
    evidence: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, signal_id: _Optional[str] = ..., kind: _Optional[_Union[SignalKind, str]] = ..., tool: _Optional[str] = ..., agent_id: _Optional[str] = ..., value: _Optional[float] = ..., evidence: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HealthComponent(_message.Message):
    __slots__ = ("name", "score", "weight", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    weight: float
    detail: str
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ..., weight: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class Anomaly(_message.Message):
    __slots__ = ("metric", "observed", "expected", "deviation", "window", "detected_at")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    DEVIATION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    metric: str
    observed: float
    expected: float
    deviation: float
    window: str
    detected_at: _timestamp_pb2.Timestamp
    def __init__(self, metric: _Optional[str] = ..., observed: _Optional[float] = ..., expected: _Optional[float] = ..., deviation: _Optional[float] = ..., window: _Optional[str] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
