import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from interlock_client.v1 import observe_pb2 as _observe_pb2
from interlock_client.v1 import plans_pb2 as _plans_pb2
from interlock_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListToolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools", "policy_revision")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[_types_pb2.ToolContract]
    policy_revision: str
    def __init__(self, tools: _Optional[_Iterable[_Union[_types_pb2.ToolContract, _Mapping]]] = ..., policy_revision: _Optional[str] = ...) -> None: ...

class RequestToolCallRequest(_message.Message):
    __slots__ = ("agent_id", "tool", "arguments", "confidence", "plan_id", "step_id", "approval_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    arguments: _struct_pb2.Struct
    confidence: float
    plan_id: str
    step_id: str
    approval_id: str
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., confidence: _Optional[float] = ..., plan_id: _Optional[str] = ..., step_id: _Optional[str] = ..., approval_id: _Optional[str] = ...) -> None: ...

class RequestToolCallResponse(_message.Message):
    __slots__ = ("decision", "grant_id")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    decision: _types_pb2.Decision
    grant_id: str
    def __init__(self, decision: _Optional[_Union[_types_pb2.Decision, _Mapping]] = ..., grant_id: _Optional[str] = ...) -> None: ...

class ReportToolResultRequest(_message.Message):
    __slots__ = ("decision_id", "agent_id", "outcome", "output", "error_message", "duration", "work_id")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    WORK_ID_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    agent_id: str
    outcome: _types_pb2.ToolOutcome
    output: _struct_pb2.Struct
    error_message: str
    duration: _duration_pb2.Duration
    work_id: str
    def __init__(self, decision_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., outcome: _Optional[_Union[_types_pb2.ToolOutcome, str]] = ..., output: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error_message: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., work_id: _Optional[str] = ...) -> None: ...

class ReportToolResultResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.ToolResult
    def __init__(self, result: _Optional[_Union[_types_pb2.ToolResult, _Mapping]] = ...) -> None: ...

class SubmitPlanRequest(_message.Message):
    __slots__ = ("phase21", "spec")
    PHASE21_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    phase21: _plans_pb2.Phase21Plan
    spec: _plans_pb2.PlanSpec
    def __init__(self, phase21: _Optional[_Union[_plans_pb2.Phase21Plan, _Mapping]] = ..., spec: _Optional[_Union[_plans_pb2.PlanSpec, _Mapping]] = ...) -> None: ...

class SubmitPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: _plans_pb2.Plan
    def __init__(self, plan: _Optional[_Union[_plans_pb2.Plan, _Mapping]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: _plans_pb2.Plan
    def __init__(self, plan: _Optional[_Union[_plans_pb2.Plan, _Mapping]] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ("states", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_plans_pb2.PlanState]
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[_plans_pb2.PlanState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans", "next_page_token")
    PLANS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[_plans_pb2.Plan]
    next_page_token: str
    def __init__(self, plans: _Optional[_Iterable[_Union[_plans_pb2.Plan, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelPlanRequest(_message.Message):
    __slots__ = ("plan_id", "reason")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    reason: str
    def __init__(self, plan_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelPlanResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: _plans_pb2.Plan
    def __init__(self, plan: _Optional[_Union[_plans_pb2.Plan, _Mapping]] = ...) -> None: ...

class PullWorkRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class PullWorkResponse(_message.Message):
    __slots__ = ("item",)
    ITEM_FIELD_NUMBER: _ClassVar[int]
    item: _plans_pb2.WorkItem
    def __init__(self, item: _Optional[_Union[_plans_pb2.WorkItem, _Mapping]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("after_seq", "plan_id", "agent_id", "kinds")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    plan_id: str
    agent_id: str
    kinds: _containers.RepeatedScalarFieldContainer[_observe_pb2.EventKind]
    def __init__(self, after_seq: _Optional[int] = ..., plan_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., kinds: _Optional[_Iterable[_Union[_observe_pb2.EventKind, str]]] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _observe_pb2.Event
    def __init__(self, event: _Optional[_Union[_observe_pb2.Event, _Mapping]] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ("states", "plan_id", "agent_id", "tool")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_observe_pb2.ApprovalState]
    plan_id: str
    agent_id: str
    tool: str
    def __init__(self, states: _Optional[_Iterable[_Union[_observe_pb2.ApprovalState, str]]] = ..., plan_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., tool: _Optional[str] = ...) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ("approvals",)
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[_observe_pb2.Approval]
    def __init__(self, approvals: _Optional[_Iterable[_Union[_observe_pb2.Approval, _Mapping]]] = ...) -> None: ...

class ResolveApprovalRequest(_message.Message):
    __slots__ = ("approval_id", "resolution", "reason")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    resolution: _observe_pb2.ApprovalResolution
    reason: str
    def __init__(self, approval_id: _Optional[str] = ..., resolution: _Optional[_Union[_observe_pb2.ApprovalResolution, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _observe_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_observe_pb2.Approval, _Mapping]] = ...) -> None: ...

class AwaitApprovalRequest(_message.Message):
    __slots__ = ("approval_id", "timeout")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    timeout: _duration_pb2.Duration
    def __init__(self, approval_id: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class AwaitApprovalResponse(_message.Message):
    __slots__ = ("approval",)
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    approval: _observe_pb2.Approval
    def __init__(self, approval: _Optional[_Union[_observe_pb2.Approval, _Mapping]] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("status", "score", "components", "anomalies", "policy_revision", "engine", "engine_available", "started_at", "version", "decisions")
    class DecisionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    ANOMALIES_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    status: _observe_pb2.HealthStatus
    score: float
    components: _containers.RepeatedCompositeFieldContainer[_observe_pb2.HealthComponent]
    anomalies: _containers.RepeatedCompositeFieldContainer[_observe_pb2.Anomaly]
    policy_revision: str
    engine: str
    engine_available: bool
    started_at: _timestamp_pb2.Timestamp
    version: str
    decisions: _containers.ScalarMap[str, int]
    def __init__(self, status: _Optional[_Union[_observe_pb2.HealthStatus, str]] = ..., score: _Optional[float] = ..., components: _Optional[_Iterable[_Union[_observe_pb2.HealthComponent, _Mapping]]] = ..., anomalies: _Optional[_Iterable[_Union[_observe_pb2.Anomaly, _Mapping]]] = ..., policy_revision: _Optional[str] = ..., engine: _Optional[str] = ..., engine_available: _Optional[bool] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[str] = ..., decisions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListSignalsRequest(_message.Message):
    __slots__ = ("kinds", "tool", "limit")
    KINDS_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[_observe_pb2.SignalKind]
    tool: str
    limit: int
    def __init__(self, kinds: _Optional[_Iterable[_Union[_observe_pb2.SignalKind, str]]] = ..., tool: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListSignalsResponse(_message.Message):
    __slots__ = ("signals",)
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    signals: _containers.RepeatedCompositeFieldContainer[_observe_pb2.Signal]
    def __init__(self, signals: _Optional[_Iterable[_Union[_observe_pb2.Signal, _Mapping]]] = ...) -> None: ...
