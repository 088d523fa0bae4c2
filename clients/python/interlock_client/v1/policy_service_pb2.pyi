import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from interlock_client.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPoliciesResponse(_message.Message):
    __slots__ = ("revision", "previous_revision", "changed")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    revision: str
    previous_revision: str
    changed: bool
    def __init__(self, revision: _Optional[str] = ..., previous_revision: _Optional[str] = ..., changed: _Optional[bool] = ...) -> None: ...

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
