import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_DENY: _ClassVar[Verdict]
    VERDICT_PENDING_APPROVAL: _ClassVar[Verdict]

class ExecutionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_MODE_UNSPECIFIED: _ClassVar[ExecutionMode]
    EXECUTION_MODE_MOCK: _ClassVar[ExecutionMode]
    EXECUTION_MODE_DRY_RUN: _ClassVar[ExecutionMode]
    EXECUTION_MODE_LIVE: _ClassVar[ExecutionMode]

class RiskLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_LEVEL_UNSPECIFIED: _ClassVar[RiskLevel]
    RISK_LEVEL_LOW: _ClassVar[RiskLevel]
    RISK_LEVEL_MEDIUM: _ClassVar[RiskLevel]
    RISK_LEVEL_HIGH: _ClassVar[RiskLevel]

class ToolOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_OUTCOME_UNSPECIFIED: _ClassVar[ToolOutcome]
    TOOL_OUTCOME_SUCCEEDED: _ClassVar[ToolOutcome]
    TOOL_OUTCOME_FAILED: _ClassVar[ToolOutcome]
    TOOL_OUTCOME_TIMED_OUT: _ClassVar[ToolOutcome]
VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_DENY: Verdict
VERDICT_PENDING_APPROVAL: Verdict
EXECUTION_MODE_UNSPECIFIED: ExecutionMode
EXECUTION_MODE_MOCK: ExecutionMode
EXECUTION_MODE_DRY_RUN: ExecutionMode
EXECUTION_MODE_LIVE: ExecutionMode
RISK_LEVEL_UNSPECIFIED: RiskLevel
RISK_LEVEL_LOW: RiskLevel
RISK_LEVEL_MEDIUM: RiskLevel
RISK_LEVEL_HIGH: RiskLevel
TOOL_OUTCOME_UNSPECIFIED: ToolOutcome
TOOL_OUTCOME_SUCCEEDED: ToolOutcome
TOOL_OUTCOME_FAILED: ToolOutcome
TOOL_OUTCOME_TIMED_OUT: ToolOutcome

class ToolContract(_message.Message):
    __slots__ = ("name", "description", "risk", "reversible", "compensating_tool", "required_permissions", "max_concurrency", "rate_limit_per_minute", "timeout", "arguments_schema")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    REVERSIBLE_FIELD_NUMBER: _ClassVar[int]
    COMPENSATING_TOOL_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    risk: RiskLevel
    reversible: bool
    compensating_tool: str
    required_permissions: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    rate_limit_per_minute: int
    timeout: _duration_pb2.Duration
    arguments_schema: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., risk: _Optional[_Union[RiskLevel, str]] = ..., reversible: _Optional[bool] = ..., compensating_tool: _Optional[str] = ..., required_permissions: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., rate_limit_per_minute: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., arguments_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("decision_id", "verdict", "mode", "reasons", "policy_revision", "engine", "tool", "agent_id", "confidence", "needs_approval", "approval_id", "input_hash", "decided_at", "plan_id", "step_id", "fail_closed")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_HASH_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    FAIL_CLOSED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    verdict: Verdict
    mode: ExecutionMode
    reasons: _containers.RepeatedScalarFieldContainer[str]
    policy_revision: str
    engine: str
    tool: str
    agent_id: str
    confidence: float
    needs_approval: bool
    approval_id: str
    input_hash: str
    decided_at: _timestamp_pb2.Timestamp
    plan_id: str
    step_id: str
    fail_closed: bool
    def __init__(self, decision_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., mode: _Optional[_Union[ExecutionMode, str]] = ..., reasons: _Optional[_Iterable[str]] = ..., policy_revision: _Optional[str] = ..., engine: _Optional[str] = ..., tool: _Optional[str] = ..., agent_id: _Optional[str] = ..., confidence: _Optional[float] = ..., needs_approval: _Optional[bool] = ..., approval_id: _Optional[str] = ..., input_hash: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., plan_id: _Optional[str] = ..., step_id: _Optional[str] = ..., fail_closed: _Optional[bool] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("decision_id", "agent_id", "tool", "mode", "outcome", "output", "error_message", "duration", "reported_at")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    agent_id: str
    tool: str
    mode: ExecutionMode
    outcome: ToolOutcome
    output: _struct_pb2.Struct
    error_message: str
    duration: _duration_pb2.Duration
    reported_at: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., mode: _Optional[_Union[ExecutionMode, str]] = ..., outcome: _Optional[_Union[ToolOutcome, str]] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error_message: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
