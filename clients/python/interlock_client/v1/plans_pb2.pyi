import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from interlock_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_STATE_UNSPECIFIED: _ClassVar[PlanState]
    PLAN_STATE_PENDING: _ClassVar[PlanState]
    PLAN_STATE_RUNNING: _ClassVar[PlanState]
    PLAN_STATE_SUCCEEDED: _ClassVar[PlanState]
    PLAN_STATE_FAILED: _ClassVar[PlanState]
    PLAN_STATE_FAILED_PARTIAL: _ClassVar[PlanState]
    PLAN_STATE_CANCELLED: _ClassVar[PlanState]
    PLAN_STATE_ROLLED_BACK: _ClassVar[PlanState]

class StepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATE_UNSPECIFIED: _ClassVar[StepState]
    STEP_STATE_PENDING: _ClassVar[StepState]
    STEP_STATE_DECIDED: _ClassVar[StepState]
    STEP_STATE_AWAITING_APPROVAL: _ClassVar[StepState]
    STEP_STATE_DISPATCHED: _ClassVar[StepState]
    STEP_STATE_SUCCEEDED: _ClassVar[StepState]
    STEP_STATE_FAILED: _ClassVar[StepState]
    STEP_STATE_TIMED_OUT: _ClassVar[StepState]
    STEP_STATE_ROLLED_BACK: _ClassVar[StepState]
    STEP_STATE_SKIPPED: _ClassVar[StepState]
    STEP_STATE_CANCELLED: _ClassVar[StepState]
    STEP_STATE_AMBIGUOUS: _ClassVar[StepState]

class ConflictType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFLICT_TYPE_UNSPECIFIED: _ClassVar[ConflictType]
    CONFLICT_TYPE_RESOURCE: _ClassVar[ConflictType]
    CONFLICT_TYPE_ORDERING: _ClassVar[ConflictType]
    CONFLICT_TYPE_RATE_LIMIT: _ClassVar[ConflictType]
    CONFLICT_TYPE_DUPLICATE_ACTION: _ClassVar[ConflictType]
    CONFLICT_TYPE_PERMISSION: _ClassVar[ConflictType]
    CONFLICT_TYPE_TIMEOUT: _ClassVar[ConflictType]
PLAN_STATE_UNSPECIFIED: PlanState
PLAN_STATE_PENDING: PlanState
PLAN_STATE_RUNNING: PlanState
PLAN_STATE_SUCCEEDED: PlanState
PLAN_STATE_FAILED: PlanState
PLAN_STATE_FAILED_PARTIAL: PlanState
PLAN_STATE_CANCELLED: PlanState
PLAN_STATE_ROLLED_BACK: PlanState
STEP_STATE_UNSPECIFIED: StepState
STEP_STATE_PENDING: StepState
STEP_STATE_DECIDED: StepState
STEP_STATE_AWAITING_APPROVAL: StepState
STEP_STATE_DISPATCHED: StepState
STEP_STATE_SUCCEEDED: StepState
STEP_STATE_FAILED: StepState
STEP_STATE_TIMED_OUT: StepState
STEP_STATE_ROLLED_BACK: StepState
STEP_STATE_SKIPPED: StepState
STEP_STATE_CANCELLED: StepState
STEP_STATE_AMBIGUOUS: StepState
CONFLICT_TYPE_UNSPECIFIED: ConflictType
CONFLICT_TYPE_RESOURCE: ConflictType
CONFLICT_TYPE_ORDERING: ConflictType
CONFLICT_TYPE_RATE_LIMIT: ConflictType
CONFLICT_TYPE_DUPLICATE_ACTION: ConflictType
CONFLICT_TYPE_PERMISSION: ConflictType
CONFLICT_TYPE_TIMEOUT: ConflictType

class Phase21Plan(_message.Message):
    __slots__ = ("plan_id", "agent_assignments", "execution_order", "confidence_scores")
    class ToolList(_message.Message):
        __slots__ = ("tools",)
        TOOLS_FIELD_NUMBER: _ClassVar[int]
        tools: _containers.RepeatedScalarFieldContainer[str]
        def __init__(self, tools: _Optional[_Iterable[str]] = ...) -> None: ...
    class AgentAssignmentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Phase21Plan.ToolList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Phase21Plan.ToolList, _Mapping]] = ...) -> None: ...
    class ConfidenceScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ORDER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_SCORES_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    agent_assignments: _containers.MessageMap[str, Phase21Plan.ToolList]
    execution_order: _containers.RepeatedScalarFieldContainer[str]
    confidence_scores: _containers.ScalarMap[str, float]
    def __init__(self, plan_id: _Optional[str] = ..., agent_assignments: _Optional[_Mapping[str, Phase21Plan.ToolList]] = ..., execution_order: _Optional[_Iterable[str]] = ..., confidence_scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class StepSpec(_message.Message):
    __slots__ = ("step_id", "tool", "agent_id", "arguments", "confidence", "depends_on")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    tool: str
    agent_id: str
    arguments: _struct_pb2.Struct
    confidence: float
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, step_id: _Optional[str] = ..., tool: _Optional[str] = ..., agent_id: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., confidence: _Optional[float] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanSpec(_message.Message):
    __slots__ = ("plan_id", "steps", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    steps: _containers.RepeatedCompositeFieldContainer[StepSpec]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, plan_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepSpec, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Conflict(_message.Message):
    __slots__ = ("type", "resolution", "description", "step_ids", "plan_ids", "detected_at")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STEP_IDS_FIELD_NUMBER: _ClassVar[int]
    PLAN_IDS_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    type: ConflictType
    resolution: str
    description: str
    step_ids: _containers.RepeatedScalarFieldContainer[str]
    plan_ids: _containers.RepeatedScalarFieldContainer[str]
    detected_at: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[_Union[ConflictType, str]] = ..., resolution: _Optional[str] = ..., description: _Optional[str] = ..., step_ids: _Optional[_Iterable[str]] = ..., plan_ids: _Optional[_Iterable[str]] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Step(_message.Message):
    __slots__ = ("step_id", "tool", "agent_id", "arguments", "confidence", "depends_on", "state", "decision", "result", "message", "updated_at")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    tool: str
    agent_id: str
    arguments: _struct_pb2.Struct
    confidence: float
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    state: StepState
    decision: _types_pb2.Decision
    result: _types_pb2.ToolResult
    message: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, step_id: _Optional[str] = ..., tool: _Optional[str] = ..., agent_id: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., confidence: _Optional[float] = ..., depends_on: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[StepState, str]] = ..., decision: _Optional[_Union[_types_pb2.Decision, _Mapping]] = ..., result: _Optional[_Union[_types_pb2.ToolResult, _Mapping]] = ..., message: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("plan_id", "state", "steps", "conflicts", "labels", "submitted_at", "updated_at", "message")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    state: PlanState
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    conflicts: _containers.RepeatedCompositeFieldContainer[Conflict]
    labels: _containers.ScalarMap[str, str]
    submitted_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, plan_id: _Optional[str] = ..., state: _Optional[_Union[PlanState, str]] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., conflicts: _Optional[_Iterable[_Union[Conflict, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class WorkItem(_message.Message):
    __slots__ = ("work_id", "plan_id", "step_id", "decision_id", "tool", "arguments", "mode", "deadline", "attempt", "compensation", "agent_id")
    WORK_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    work_id: str
    plan_id: str
    step_id: str
    decision_id: str
    tool: str
    arguments: _struct_pb2.Struct
    mode: _types_pb2.ExecutionMode
    deadline: _timestamp_pb2.Timestamp
    attempt: int
    compensation: bool
    agent_id: str
    def __init__(self, work_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., step_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., compensation: _Optional[bool] = ..., agent_id: _Optional[str] = ...) -> None: ...
