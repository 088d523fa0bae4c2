"""Policy sets and the tool catalog: revisions, data placement, checks."""

from __future__ import annotations

import pytest
from interlock.contracts import Catalog
from interlock.errors import InvalidArgument, NotFound, PolicyLoadError
from interlock.policy.bundle import PolicySet

from tests.conftest import POLICIES

MODULE = "package interlock.decision\n\nmain := {}\n"


def test_revision_is_a_content_hash() -> None:
    a = PolicySet.from_dir(POLICIES)
    b = PolicySet.from_files(dict(a.files))
    assert a.revision == b.revision and len(a.revision) == 64
    changed = dict(a.files)
    changed["interlock/config/data.yaml"] += "\n# a comment\n"
    assert PolicySet.from_files(changed).revision != a.revision


def test_tests_are_not_part_of_the_set() -> None:
    s = PolicySet.from_dir(POLICIES)
    assert not any(p.endswith("_test.rego") for p in s.files)
    assert "interlock/decision/decision.rego" in s.modules


def test_data_documents_sit_at_their_folder_path() -> None:
    s = PolicySet.from_files(
        {"p.rego": MODULE, "a/b/data.yaml": "x: 1\n", "a/data.json": '{"y": 2}'}
    )
    assert s.data == {"a": {"b": {"x": 1}, "y": 2}}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a/data.yaml": "x: 1\n"}, "no Rego modules"),
        ({"p.rego": MODULE, "a/data.yaml": "x: [\n"}, "a/data.yaml: not valid YAML"),
        ({"p.rego": MODULE, "a/data.yaml": "- 1\n"}, "must be a mapping"),
        ({"p.rego": MODULE, "a/data.yaml": "b: 1\n", "a/b/data.yaml": "c: 1\n"}, "defined twice"),
        ({"../p.rego": MODULE}, "not a relative path"),
        ({"p.rego": MODULE, "a/data.yaml": 'k: "\\ud800"\n'}, "at k: text that is not valid"),
        ({"p.rego": MODULE, "a/data.yaml": "k: 2026-11-25\n"}, "a date is not JSON data"),
        ({"p.rego": MODULE, "a/data.yaml": "k: [.nan]\n"}, r"at k\[0\]: nan is not a JSON"),
    ],
)
def test_broken_sets_name_the_file(files: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyLoadError, match=message):
        PolicySet.from_files(files)


def _catalog(**tool_overrides: object) -> dict:
    tool = {
        "risk": "LOW",
        "reversible": True,
        "compensating_tool": None,
        "required_permissions": ["a"],
        "max_concurrency": 1,
        "rate_limit_per_minute": 1,
        "timeout_seconds": 1,
        "arguments_schema": {"type": "object"},
    }
    tool.update(tool_overrides)
    return {
        "interlock": {"catalog": {"tools": {"t": tool}}, "agents": {"ag": {"permissions": ["a"]}}}
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"risk": "SEVERE"}, "risk must be one of LOW, MEDIUM, HIGH"),
        ({"reversible": "yes"}, "reversible has the wrong type"),
        ({"compensating_tool": "undo"}, "compensating_tool 'undo' is not in the catalog"),
        ({"arguments_schema": {"type": "objekt"}}, "not a valid JSON Schema"),
        ({"max_concurrency": 0}, "must be positive"),
        ({"required_permissions": [""]}, "non-empty strings"),
        (
            {"arguments_schema": {"properties": {"x": {"$ref": "http://127.0.0.1:1/s.json"}}}},
            "only local references",
        ),
    ],
)
def test_a_bad_contract_refuses_the_catalog(override: dict, message: str) -> None:
    with pytest.raises(PolicyLoadError, match=message):
        Catalog.from_data(_catalog(**override))


def test_shipped_catalog_checks_and_validates_arguments() -> None:
    catalog = Catalog.from_data(PolicySet.from_dir(POLICIES).data)
    catalog.check_arguments(
        "transfer_funds",
        {"from_account": "AB123456", "to_account": "CD123456", "amount": 5, "currency": "EUR"},
    )
    with pytest.raises(InvalidArgument) as info:
        catalog.check_arguments(
            "transfer_funds", {"from_account": "x", "amount": -1, "currency": "XXX"}
        )
    fields = {v.field for v in info.value.violations}
    assert fields == {
        "arguments.from_account",
        "arguments.amount",
        "arguments.currency",
        "arguments.to_account",
    }
    with pytest.raises(NotFound, match="unknown tool 'nope'"):
        catalog.tool("nope")
    with pytest.raises(NotFound, match="unknown agent 'nobody'"):
        catalog.agent("nobody")


def test_every_missing_required_argument_is_named() -> None:
    catalog = Catalog.from_data(PolicySet.from_dir(POLICIES).data)
    with pytest.raises(InvalidArgument) as info:
        catalog.check_arguments("transfer_funds", {})
    assert [v.field for v in info.value.violations] == [
        "arguments.from_account",
        "arguments.to_account",
        "arguments.amount",
        "arguments.currency",
    ]


ARGUMENT_CASES = [
    ("vision_inspect", {"target": "login"}),
    ("vision_inspect", {"target": ""}),
    ("vision_inspect", {"target": "x", "region": {"x": 0, "y": 0, "width": 1, "height": 1}}),
    ("vision_inspect", {"target": "x", "region": {"x": 0.5, "y": 0, "width": 1, "height": 1}}),
    ("form_fill", {"form_id": "f", "fields": {}}),
    ("form_fill", {"form_id": "f", "fields": {"a": "b"}}),
    ("form_fill", {"form_id": "f", "fields": {"a": 1}}),
    ("crm_lookup", {"record_id": "CU-12345"}),
    ("crm_lookup", {"record_id": "cu-12345"}),
    ("send_email", {"to": ["a@b.co"], "subject": "s", "body": ""}),
    ("send_email", {"to": ["not an address"], "subject": "s", "body": ""}),
    ("send_email", {"to": [], "subject": "s", "body": ""}),
    (
        "transfer_funds",
        {"from_account": "AB123456", "to_account": "CD123456", "amount": 5, "currency": "EUR"},
    ),
    (
        "transfer_funds",
        {"from_account": "AB123456", "to_account": "CD123456", "amount": 0, "currency": "EUR"},
    ),
    (
        "transfer_funds",
        {"from_account": "AB123456", "to_account": "CD123456", "amount": 5.5, "currency": "JPY"},
    ),
    ("button_click", {"selector": "#go", "double_click": "yes"}),
    ("delete_record", {"record_id": "CU-1234", "reason": "ok"}),
]


@pytest.mark.parametrize(("tool", "arguments"), ARGUMENT_CASES)
def test_fast_and_explaining_validators_agree(tool: str, arguments: dict) -> None:
    """jsonschema-rs accepts; python-jsonschema explains: they must agree on every case."""
    catalog = Catalog.from_data(PolicySet.from_dir(POLICIES).data)
    fast = catalog._fast[tool].is_valid(arguments)
    slow = not list(catalog._validators[tool].iter_errors(arguments))
    assert fast == slow
    if fast:
        catalog.check_arguments(tool, arguments)
    else:
        with pytest.raises(InvalidArgument):
            catalog.check_arguments(tool, arguments)
