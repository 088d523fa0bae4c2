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

class ReplayChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLAY_CHANGE_UNSPECIFIED: _ClassVar[ReplayChange]
    REPLAY_CHANGE_UNCHANGED: _ClassVar[ReplayChange]
    REPLAY_CHANGE_WIDENS: _ClassVar[ReplayChange]
    REPLAY_CHANGE_NARROWS: _ClassVar[ReplayChange]

class ShadowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHADOW_STATE_UNSPECIFIED: _ClassVar[ShadowState]
    SHADOW_STATE_RUNNING: _ClassVar[ShadowState]
    SHADOW_STATE_PROMOTED: _ClassVar[ShadowState]
    SHADOW_STATE_STOPPED: _ClassVar[ShadowState]
REPLAY_CHANGE_UNSPECIFIED: ReplayChange
REPLAY_CHANGE_UNCHANGED: ReplayChange
REPLAY_CHANGE_WIDENS: ReplayChange
REPLAY_CHANGE_NARROWS: ReplayChange
SHADOW_STATE_UNSPECIFIED: ShadowState
SHADOW_STATE_RUNNING: ShadowState
SHADOW_STATE_PROMOTED: ShadowState
SHADOW_STATE_STOPPED: ShadowState

class PolicySet(_message.Message):
    __slots__ = ("files",)
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.ScalarMap[str, str]
    def __init__(self, files: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetPolicyStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPolicyStatusResponse(_message.Message):
    __slots__ = ("revision", "engine", "engine_available", "source", "loaded_at", "modules", "tool_count", "last_error", "last_error_at", "reloads", "reload_failures")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    TOOL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    RELOADS_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FAILURES_FIELD_NUMBER: _ClassVar[int]
    revision: str
    engine: str
    engine_available: bool
    source: str
    loaded_at: _timestamp_pb2.Timestamp
    modules: _containers.RepeatedScalarFieldContainer[str]
    tool_count: int
    last_error: str
    last_error_at: _timestamp_pb2.Timestamp
    reloads: int
    reload_failures: int
    def __init__(self, revision: _Optional[str] = ..., engine: _Optional[str] = ..., engine_available: _Optional[bool] = ..., source: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., modules: _Optional[_Iterable[str]] = ..., tool_count: _Optional[int] = ..., last_error: _Optional[str] = ..., last_error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reloads: _Optional[int] = ..., reload_failures: _Optional[int] = ...) -> None: ...

class ReloadPoliciesRequest(_message.Message):
    __slots__ = ("accept_widening", "reason")
    ACCEPT_WIDENING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accept_widening: bool
    reason: str
    def __init__(self, accept_widening: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ReloadPoliciesResponse(_message.Message):
    __slots__ = ("revision", "previous_revision", "changed", "replay_digest", "replayed_decisions", "widening_live", "tests_passed", "tests_skipped")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REPLAY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_DECISIONS_FIELD_NUMBER: _ClassVar[int]
    WIDENING_LIVE_FIELD_NUMBER: _ClassVar[int]
    TESTS_PASSED_FIELD_NUMBER: _ClassVar[int]
    TESTS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    revision: str
    previous_revision: str
    changed: bool
    replay_digest: str
    replayed_decisions: int
    widening_live: int
    tests_passed: int
    tests_skipped: int
    def __init__(self, revision: _Optional[str] = ..., previous_revision: _Optional[str] = ..., changed: _Optional[bool] = ..., replay_digest: _Optional[str] = ..., replayed_decisions: _Optional[int] = ..., widening_live: _Optional[int] = ..., tests_passed: _Optional[int] = ..., tests_skipped: _Optional[int] = ...) -> None: ...

class ToolCallInput(_message.Message):
    __slots__ = ("agent_id", "tool", "arguments", "confidence", "live_in_flight")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    arguments: _struct_pb2.Struct
    confidence: float
    live_in_flight: int
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., confidence: _Optional[float] = ..., live_in_flight: _Optional[int] = ...) -> None: ...

class EvaluatePolicyRequest(_message.Message):
    __slots__ = ("tool_call", "raw_input", "policy_set")
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    RAW_INPUT_FIELD_NUMBER: _ClassVar[int]
    POLICY_SET_FIELD_NUMBER: _ClassVar[int]
    tool_call: ToolCallInput
    raw_input: _struct_pb2.Struct
    policy_set: PolicySet
    def __init__(self, tool_call: _Optional[_Union[ToolCallInput, _Mapping]] = ..., raw_input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., policy_set: _Optional[_Union[PolicySet, _Mapping]] = ...) -> None: ...

class EvaluatePolicyResponse(_message.Message):
    __slots__ = ("verdict", "mode", "needs_approval", "reasons", "revision", "engine", "input")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    verdict: _types_pb2.Verdict
    mode: _types_pb2.ExecutionMode
    needs_approval: bool
    reasons: _containers.RepeatedScalarFieldContainer[str]
    revision: str
    engine: str
    input: _struct_pb2.Struct
    def __init__(self, verdict: _Optional[_Union[_types_pb2.Verdict, str]] = ..., mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ..., needs_approval: _Optional[bool] = ..., reasons: _Optional[_Iterable[str]] = ..., revision: _Optional[str] = ..., engine: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ReplayPolicyRequest(_message.Message):
    __slots__ = ("policy_set", "since", "until", "agent_id", "tool", "limit", "engine", "samples", "skip_unrecorded")
    POLICY_SET_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SKIP_UNRECORDED_FIELD_NUMBER: _ClassVar[int]
    policy_set: PolicySet
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    agent_id: str
    tool: str
    limit: int
    engine: str
    samples: int
    skip_unrecorded: bool
    def __init__(self, policy_set: _Optional[_Union[PolicySet, _Mapping]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., limit: _Optional[int] = ..., engine: _Optional[str] = ..., samples: _Optional[int] = ..., skip_unrecorded: _Optional[bool] = ...) -> None: ...

class ReplayPolicyResponse(_message.Message):
    __slots__ = ("progress", "report")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    progress: ReplayProgress
    report: ReplayReport
    def __init__(self, progress: _Optional[_Union[ReplayProgress, _Mapping]] = ..., report: _Optional[_Union[ReplayReport, _Mapping]] = ...) -> None: ...

class ReplayProgress(_message.Message):
    __slots__ = ("done", "total")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ReplayOutcome(_message.Message):
    __slots__ = ("verdict", "mode", "needs_approval")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    verdict: _types_pb2.Verdict
    mode: _types_pb2.ExecutionMode
    needs_approval: bool
    def __init__(self, verdict: _Optional[_Union[_types_pb2.Verdict, str]] = ..., mode: _Optional[_Union[_types_pb2.ExecutionMode, str]] = ..., needs_approval: _Optional[bool] = ...) -> None: ...

class ReplaySample(_message.Message):
    __slots__ = ("decision_id", "recorded_revision", "decided_at", "agent_id", "tool", "confidence", "recorded_reasons", "candidate_reasons", "reconstructed")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_REASONS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REASONS_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    recorded_revision: str
    decided_at: _timestamp_pb2.Timestamp
    agent_id: str
    tool: str
    confidence: float
    recorded_reasons: _containers.RepeatedScalarFieldContainer[str]
    candidate_reasons: _containers.RepeatedScalarFieldContainer[str]
    reconstructed: bool
    def __init__(self, decision_id: _Optional[str] = ..., recorded_revision: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., confidence: _Optional[float] = ..., recorded_reasons: _Optional[_Iterable[str]] = ..., candidate_reasons: _Optional[_Iterable[str]] = ..., reconstructed: _Optional[bool] = ...) -> None: ...

class ReplayTransition(_message.Message):
    __slots__ = ("before", "after", "change", "count", "by_agent", "by_tool", "samples")
    class ByAgentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ByToolEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    BY_AGENT_FIELD_NUMBER: _ClassVar[int]
    BY_TOOL_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    before: ReplayOutcome
    after: ReplayOutcome
    change: ReplayChange
    count: int
    by_agent: _containers.ScalarMap[str, int]
    by_tool: _containers.ScalarMap[str, int]
    samples: _containers.RepeatedCompositeFieldContainer[ReplaySample]
    def __init__(self, before: _Optional[_Union[ReplayOutcome, _Mapping]] = ..., after: _Optional[_Union[ReplayOutcome, _Mapping]] = ..., change: _Optional[_Union[ReplayChange, str]] = ..., count: _Optional[int] = ..., by_agent: _Optional[_Mapping[str, int]] = ..., by_tool: _Optional[_Mapping[str, int]] = ..., samples: _Optional[_Iterable[_Union[ReplaySample, _Mapping]]] = ...) -> None: ...

class ReplayError(_message.Message):
    __slots__ = ("decision_id", "recorded_revision", "agent_id", "tool", "message")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDED_REVISION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    recorded_revision: str
    agent_id: str
    tool: str
    message: str
    def __init__(self, decision_id: _Optional[str] = ..., recorded_revision: _Optional[str] = ..., agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReplayReport(_message.Message):
    __slots__ = ("candidate_revision", "engine", "decisions", "replayed", "distinct_inputs", "unrecorded_inputs", "reconstructed", "skipped", "failures", "unchanged", "widening", "narrowing", "transitions", "errors", "message", "seconds")
    CANDIDATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_INPUTS_FIELD_NUMBER: _ClassVar[int]
    UNRECORDED_INPUTS_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    WIDENING_FIELD_NUMBER: _ClassVar[int]
    NARROWING_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    candidate_revision: str
    engine: str
    decisions: int
    replayed: int
    distinct_inputs: int
    unrecorded_inputs: int
    reconstructed: int
    skipped: int
    failures: int
    unchanged: int
    widening: int
    narrowing: int
    transitions: _containers.RepeatedCompositeFieldContainer[ReplayTransition]
    errors: _containers.RepeatedCompositeFieldContainer[ReplayError]
    message: str
    seconds: float
    def __init__(self, candidate_revision: _Optional[str] = ..., engine: _Optional[str] = ..., decisions: _Optional[int] = ..., replayed: _Optional[int] = ..., distinct_inputs: _Optional[int] = ..., unrecorded_inputs: _Optional[int] = ..., reconstructed: _Optional[int] = ..., skipped: _Optional[int] = ..., failures: _Optional[int] = ..., unchanged: _Optional[int] = ..., widening: _Optional[int] = ..., narrowing: _Optional[int] = ..., transitions: _Optional[_Iterable[_Union[ReplayTransition, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[ReplayError, _Mapping]]] = ..., message: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class StartShadowRequest(_message.Message):
    __slots__ = ("policy_set", "sample")
    POLICY_SET_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    policy_set: PolicySet
    sample: float
    def __init__(self, policy_set: _Optional[_Union[PolicySet, _Mapping]] = ..., sample: _Optional[float] = ...) -> None: ...

class ShadowReplica(_message.Message):
    __slots__ = ("replica", "evaluated", "disagreements", "errors", "dropped")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    replica: str
    evaluated: int
    disagreements: int
    errors: int
    dropped: int
    def __init__(self, replica: _Optional[str] = ..., evaluated: _Optional[int] = ..., disagreements: _Optional[int] = ..., errors: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class Shadow(_message.Message):
    __slots__ = ("shadow_id", "state", "candidate_revision", "active_revision", "sample", "started_by", "started_at", "ended_by", "ended_at")
    SHADOW_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_REVISION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    STARTED_BY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_BY_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    shadow_id: str
    state: ShadowState
    candidate_revision: str
    active_revision: str
    sample: float
    started_by: str
    started_at: _timestamp_pb2.Timestamp
    ended_by: str
    ended_at: _timestamp_pb2.Timestamp
    def __init__(self, shadow_id: _Optional[str] = ..., state: _Optional[_Union[ShadowState, str]] = ..., candidate_revision: _Optional[str] = ..., active_revision: _Optional[str] = ..., sample: _Optional[float] = ..., started_by: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_by: _Optional[str] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StartShadowResponse(_message.Message):
    __slots__ = ("shadow",)
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ...) -> None: ...

class GetShadowStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetShadowStatusResponse(_message.Message):
    __slots__ = ("shadow", "report", "disagreements", "dropped", "replicas")
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    report: ReplayReport
    disagreements: int
    dropped: int
    replicas: _containers.RepeatedCompositeFieldContainer[ShadowReplica]
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ..., report: _Optional[_Union[ReplayReport, _Mapping]] = ..., disagreements: _Optional[int] = ..., dropped: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[ShadowReplica, _Mapping]]] = ...) -> None: ...

class PromoteShadowRequest(_message.Message):
    __slots__ = ("accept_widening", "reason")
    ACCEPT_WIDENING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accept_widening: bool
    reason: str
    def __init__(self, accept_widening: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class PromoteShadowResponse(_message.Message):
    __slots__ = ("shadow", "reload")
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    reload: ReloadPoliciesResponse
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ..., reload: _Optional[_Union[ReloadPoliciesResponse, _Mapping]] = ...) -> None: ...

class StopShadowRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopShadowResponse(_message.Message):
    __slots__ = ("shadow",)
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    shadow: Shadow
    def __init__(self, shadow: _Optional[_Union[Shadow, _Mapping]] = ...) -> None: ...
