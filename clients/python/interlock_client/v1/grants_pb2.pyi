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

class GrantState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRANT_STATE_UNSPECIFIED: _ClassVar[GrantState]
    GRANT_STATE_ACTIVE: _ClassVar[GrantState]
    GRANT_STATE_EXHAUSTED: _ClassVar[GrantState]
    GRANT_STATE_EXPIRED: _ClassVar[GrantState]
    GRANT_STATE_REVOKED: _ClassVar[GrantState]
GRANT_STATE_UNSPECIFIED: GrantState
GRANT_STATE_ACTIVE: GrantState
GRANT_STATE_EXHAUSTED: GrantState
GRANT_STATE_EXPIRED: GrantState
GRANT_STATE_REVOKED: GrantState

class Grant(_message.Message):
    __slots__ = ("grant_id", "state", "agent_id", "tool", "arguments_equal", "argument_patterns", "arguments_schema", "plan_id", "expires_at", "max_uses", "uses", "created_by", "created_at", "reason", "approval_id", "revoked_by", "revoked_at", "revoke_reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_EQUAL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENT_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    state: GrantState
    agent_id: str
    tool: str
    arguments_equal: _struct_pb2.Struct
    argument_patterns: _struct_pb2.Struct
    arguments_schema: _struct_pb2.Struct
    plan_id: str
    expires_at: _timestamp_pb2.Timestamp
    max_uses: int
    uses: int
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    reason: str
    approval_id: str
    revoked_by: str
    revoked_at: _timestamp_pb2.Timestamp
    revoke_reason: str
    def __init__(self, grant_id: _Optional[str] = ..., state: _Optional[_Union[GrantState, str]] = ..., agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_equal: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., argument_patterns: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., arguments_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., plan_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_uses: _Optional[int] = ..., uses: _Optional[int] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., approval_id: _Optional[str] = ..., revoked_by: _Optional[str] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_reason: _Optional[str] = ...) -> None: ...

class CreateGrantRequest(_message.Message):
    __slots__ = ("agent_id", "tool", "arguments_equal", "argument_patterns", "arguments_schema", "plan_id", "expires_at", "max_uses", "reason", "approval_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_EQUAL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENT_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    arguments_equal: _struct_pb2.Struct
    argument_patterns: _struct_pb2.Struct
    arguments_schema: _struct_pb2.Struct
    plan_id: str
    expires_at: _timestamp_pb2.Timestamp
    max_uses: int
    reason: str
    approval_id: str
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_equal: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., argument_patterns: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., arguments_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., plan_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_uses: _Optional[int] = ..., reason: _Optional[str] = ..., approval_id: _Optional[str] = ...) -> None: ...

class CreateGrantResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...

class ListGrantsRequest(_message.Message):
    __slots__ = ("agent_id", "tool", "states")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    states: _containers.RepeatedScalarFieldContainer[GrantState]
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., states: _Optional[_Iterable[_Union[GrantState, str]]] = ...) -> None: ...

class ListGrantsResponse(_message.Message):
    __slots__ = ("grants",)
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    def __init__(self, grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ...) -> None: ...

class RevokeGrantRequest(_message.Message):
    __slots__ = ("grant_id", "reason")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    reason: str
    def __init__(self, grant_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeGrantResponse(_message.Message):
    __slots__ = ("grant",)
    GRANT_FIELD_NUMBER: _ClassVar[int]
    grant: Grant
    def __init__(self, grant: _Optional[_Union[Grant, _Mapping]] = ...) -> None: ...
