"""A rate-limited call says when to retry where gRPC client libraries look:
``google.rpc.RetryInfo`` in the status details, beside the ErrorInfo."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from interlock.v1 import control_plane_pb2 as pb

from tests.conftest import StartServer


async def test_rate_limited_answer_carries_retry_info(start_server: StartServer) -> None:
    rate = 2.0
    running = await start_server(
        rate_limit_per_second=rate, rate_limit_burst=1, rate_limit_dev_principal=True
    )
    stub = running.cp
    await stub.ListTools(pb.ListToolsRequest())  # spends the one token of the burst
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTools(pb.ListToolsRequest())
    err = caught.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    infos = [d for d in status.details if d.Unpack(info)]
    retries = [d for d in status.details if d.Is(retry.DESCRIPTOR)]
    assert len(infos) == 1 and info.reason == "RATE_LIMITED"
    assert len(retries) == 1, "no RetryInfo in the status details"
    retries[0].Unpack(retry)
    delay = retry.retry_delay.ToNanoseconds() / 1e9
    # The wait the ErrorInfo names (rounded to ms) is the RetryInfo's delay,
    # and a bucket of rate 2/s never asks for more than half a second.
    assert abs(delay - float(info.metadata["retry_after_seconds"])) <= 0.0005
    assert 0 < delay <= 1 / rate


async def test_other_errors_carry_no_retry_info(start_server: StartServer) -> None:
    running = await start_server()
    stub = running.cp
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPlan(pb.GetPlanRequest(plan_id="pln_nope"))
    status = rpc_status.from_call(caught.value)
    assert status is not None
    assert not any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
