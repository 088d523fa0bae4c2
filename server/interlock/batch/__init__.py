"""Batch runs, the seed's way: load plans, run them all, read seven files.

    from interlock.batch import run_plans
    result = run_plans("plans.json", out_dir="out", approve=lambda a: a.confidence > 0.8)
    result.summary   # plans processed, steps by mode and outcome, conflicts, rollbacks, ...

``interlock run-plans FILE --out DIR`` does the same from the command line.
Modules: ``inputs`` (plans, grants and config files), ``rules`` (``--approve``
rules, ``--fail`` specs), ``run`` (the server, workers and approver of one
run), ``outputs`` (the seven files, the summary, the table).
"""

from interlock.batch.inputs import BatchInputError, load_plans
from interlock.batch.outputs import FILES, BatchResult, PlanOutcome, format_table
from interlock.batch.rules import (
    ApprovalRequest,
    ApprovalRule,
    Approver,
    FailSpec,
    RuleError,
    parse_fail,
    parse_rule,
)
from interlock.batch.run import BatchOptions, run_plans, run_plans_async

__all__ = [
    "FILES",
    "ApprovalRequest",
    "ApprovalRule",
    "Approver",
    "BatchInputError",
    "BatchOptions",
    "BatchResult",
    "FailSpec",
    "PlanOutcome",
    "RuleError",
    "format_table",
    "load_plans",
    "parse_fail",
    "parse_rule",
    "run_plans",
    "run_plans_async",
]
