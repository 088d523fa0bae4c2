import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrustState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRUST_STATE_UNSPECIFIED: _ClassVar[TrustState]
    TRUST_STATE_TRUSTED: _ClassVar[TrustState]
    TRUST_STATE_DEMOTED: _ClassVar[TrustState]
    TRUST_STATE_PROBATION: _ClassVar[TrustState]
TRUST_STATE_UNSPECIFIED: TrustState
TRUST_STATE_TRUSTED: TrustState
TRUST_STATE_DEMOTED: TrustState
TRUST_STATE_PROBATION: TrustState

class PairTrust(_message.Message):
    __slots__ = ("agent_id", "tool", "state", "failures", "failures_needed", "window_seconds", "demoted_at", "demoted_until", "demotions", "clean_runs", "clean_runs_needed", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_NEEDED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEMOTED_AT_FIELD_NUMBER: _ClassVar[int]
    DEMOTED_UNTIL_FIELD_NUMBER: _ClassVar[int]
    DEMOTIONS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_RUNS_FIELD_NUMBER: _ClassVar[int]
    CLEAN_RUNS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    state: TrustState
    failures: int
    failures_needed: int
    window_seconds: float
    demoted_at: _timestamp_pb2.Timestamp
    demoted_until: _timestamp_pb2.Timestamp
    demotions: int
    clean_runs: int
    clean_runs_needed: int
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., state: _Optional[_Union[TrustState, str]] = ..., failures: _Optional[int] = ..., failures_needed: _Optional[int] = ..., window_seconds: _Optional[float] = ..., demoted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., demoted_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., demotions: _Optional[int] = ..., clean_runs: _Optional[int] = ..., clean_runs_needed: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class GetTrustRequest(_message.Message):
    __slots__ = ("agent_id", "tool")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ...) -> None: ...

class GetTrustResponse(_message.Message):
    __slots__ = ("pairs",)
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[PairTrust]
    def __init__(self, pairs: _Optional[_Iterable[_Union[PairTrust, _Mapping]]] = ...) -> None: ...

class ResetTrustRequest(_message.Message):
    __slots__ = ("agent_id", "tool", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    tool: str
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., tool: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResetTrustResponse(_message.Message):
    __slots__ = ("trust",)
    TRUST_FIELD_NUMBER: _ClassVar[int]
    trust: PairTrust
    def __init__(self, trust: _Optional[_Union[PairTrust, _Mapping]] = ...) -> None: ...
