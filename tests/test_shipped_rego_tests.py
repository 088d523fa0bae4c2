"""The shipped Rego tests test the rules, not the data an operator edits.

The reload gate runs a set's own tests (docs/policies.md, "The gate"). The
shipped tests pin what they assume (thresholds, switches, approval rules,
agents, tool contracts: interlock/fixtures), so an operator's edit of a value
in data.yaml is never refused for failing them. Here every value the policy
reads from data is changed, one at a time, and the shipped tests are run on
regorus (the default engine) against each changed set: none may fail.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from interlock.policy.bundle import PolicySet
from interlock.policy.regotests import _regorus_results, discover

from tests.conftest import ROOT

CATALOG_FIELDS_THE_POLICY_READS = {
    "risk",
    "reversible",
    "compensating_tool",
    "required_permissions",
    "grantable",
    "human_approval",
}


def leaves(doc: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            yield from leaves(value, (*path, key))
    else:
        yield path


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "-edited"
    if isinstance(value, list):
        return value[:-1] if value else ["edited"]
    return "edited"


def edits(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One copy of data per value the policy may read, with that value changed."""
    for path in leaves(data["interlock"]):
        if path[0] == "catalog" and (
            len(path) < 4 or path[3] not in CATALOG_FIELDS_THE_POLICY_READS
        ):
            continue
        if path[0] == "agents" and path[-1] == "description":
            continue
        edited = copy.deepcopy(data)
        parent = edited["interlock"]
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = changed(parent[path[-1]])
        yield ".".join(path), edited


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    pytest.importorskip("interlock_regorus", reason="the regorus binding is not built")
    return PolicySet.from_dir(ROOT / "policies")


def test_the_shipped_tests_pass_as_shipped(shipped: PolicySet) -> None:
    found = discover(shipped.tests)
    results = _regorus_results(shipped, found)
    assert len(results) == sum(len(n) for n in found.values()) > 100
    assert {name: why for name, why in results.items() if why} == {}


def test_no_single_edit_of_the_data_fails_a_shipped_test(shipped: PolicySet) -> None:
    found = discover(shipped.tests)
    failing: dict[str, list[str]] = {}
    tried = 0
    for where, data in edits(dict(shipped.data)):
        tried += 1
        results = _regorus_results(dataclasses.replace(shipped, data=data), found)
        bad = sorted(name for name, why in results.items() if why)
        if bad:
            failing[where] = bad
    assert tried > 40
    assert failing == {}
