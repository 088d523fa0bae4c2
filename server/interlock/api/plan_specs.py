"""SubmitPlan's plan message as the documents :mod:`interlock.plans.spec` parses.

Field paths stay those of the submission (``spec.steps[1].arguments.x``), so a
plan sent over gRPC and the same plan as a JSON file are reported alike.
"""

from __future__ import annotations

from typing import Any

from interlock.api.convert import struct_to_dict
from interlock.errors import FieldViolation, InvalidArgument
from interlock.plans.model import PlanSpec
from interlock.plans.spec import PHASE21, REASON, SPEC, parse_phase21, parse_spec
from interlock.v1 import control_plane_pb2, plans_pb2


def from_proto(request: control_plane_pb2.SubmitPlanRequest) -> PlanSpec:
    """The plan of a SubmitPlan request; validate it next."""
    kind = request.WhichOneof("plan")
    if kind == PHASE21:
        p = request.phase21
        # Proto maps have no order: sort them, so that reports are stable.
        return parse_phase21(
            {
                "plan_id": p.plan_id,
                "agent_assignments": {
                    agent: list(tools.tools) for agent, tools in sorted(p.agent_assignments.items())
                },
                "execution_order": list(p.execution_order),
                "confidence_scores": dict(sorted(p.confidence_scores.items())),
            }
        )
    if kind == SPEC:
        problems: list[FieldViolation] = []
        doc = {
            "plan_id": request.spec.plan_id,
            "labels": dict(sorted(request.spec.labels.items())),
            "steps": [_step_doc(i, s, problems) for i, s in enumerate(request.spec.steps)],
        }
        return parse_spec(doc, problems)
    raise InvalidArgument.field("plan", "is required: set phase21 or spec", reason=REASON)


def _step_doc(i: int, step: plans_pb2.StepSpec, problems: list[FieldViolation]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "step_id": step.step_id,
        "tool": step.tool,
        "agent_id": step.agent_id,
        "depends_on": list(step.depends_on),
    }
    if step.HasField("confidence"):  # absent: reported as required by validation
        doc["confidence"] = step.confidence
    # An absent Struct means no arguments; an empty one is an empty object.
    if step.HasField("arguments"):
        try:
            doc["arguments"] = struct_to_dict(step.arguments, f"{SPEC}.steps[{i}].arguments")
        except InvalidArgument as err:  # a NaN or an infinity
            problems.extend(err.violations)
    return doc


__all__ = ["from_proto"]
