"""What a batch run reads: the plans file, the grants file, its config file.

A plans file holds one plan object, a JSON list of plan objects, or JSON
Lines (one plan object per line; blank lines are skipped), in either plan
format (:func:`interlock.plans.spec.parse_json_plan`). The plans are not
validated here: the server validates each on submission, and a refused plan
is reported as such.

``--grants FILE`` adds agents for one run: a YAML (or JSON) mapping shaped
like ``policies/interlock/agents/data.yaml``. The run copies the policy
folder into its data dir and merges the entries into the copy's agents
document; the shipped folder is never touched.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from interlock.errors import InterlockError
from interlock.plans.spec import parse_json_plan

AGENTS_DATA = Path("interlock") / "agents" / "data.yaml"
"""The agents document inside a policy folder."""


class BatchInputError(ValueError):
    """A plans, grants or config file the batch run cannot use; the message says where."""


@dataclass(frozen=True)
class PlanDocument:
    """One plan as written, with where it came from."""

    doc: Mapping[str, Any]
    where: str
    plan_id: str
    agents: tuple[str, ...]


def plan_document(doc: Any, where: str) -> PlanDocument:
    """One plan document: its id and the agents it names (it is validated on submission)."""
    if not isinstance(doc, Mapping):
        raise BatchInputError(f"{where}: a plan must be a JSON object, not {type(doc).__name__}")
    try:
        spec = parse_json_plan(doc)
    except InterlockError as exc:
        raise BatchInputError(f"{where}: {exc.message}") from None
    agents = tuple(dict.fromkeys(s.agent_id for s in spec.steps if s.agent_id))
    return PlanDocument(doc, where, str(doc.get("plan_id", "")), agents)


def parse_plans(text: str, name: str = "<plans>") -> list[PlanDocument]:
    """The plans of a file's text: an object, a list, or JSON Lines."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as first:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise BatchInputError(f"{name}: not JSON: {first}") from None
        out = []
        for n, line in lines:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BatchInputError(f"{name}:{n}: not a JSON line: {exc}") from None
            out.append(plan_document(doc, f"{name}:{n}"))
        return out
    if isinstance(whole, list):
        if not whole:
            raise BatchInputError(f"{name}: the list holds no plans")
        return [plan_document(doc, f"{name}[{i}]") for i, doc in enumerate(whole)]
    return [plan_document(whole, name)]


def load_plans(path: str | Path) -> list[PlanDocument]:
    """Read a plans file (``-`` is not supported: a batch run names its input)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read {path}: {exc}") from None
    plans = parse_plans(text, str(path))
    seen: dict[str, str] = {}
    for p in plans:
        if p.plan_id and p.plan_id in seen:
            raise BatchInputError(
                f"{p.where}: plan id {p.plan_id!r} is used twice (first at {seen[p.plan_id]})"
            )
        seen.setdefault(p.plan_id, p.where)
    return plans


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML or JSON file whose top level is a mapping (empty: an empty mapping)."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BatchInputError(f"{what} {path}: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise BatchInputError(f"{what} {path}: the top level must be a mapping")
    return doc


def _check_grants(grants: Mapping[str, Any], where: str) -> None:
    for agent, entry in grants.items():
        if not isinstance(agent, str) or not agent:
            raise BatchInputError(f"{where}: agent names must be strings, not {agent!r}")
        if not isinstance(entry, Mapping):
            raise BatchInputError(
                f"{where}: {agent}: must be a mapping like "
                "{description: ..., permissions: [screen.read]}"
            )
        permissions = entry.get("permissions", [])
        if not isinstance(permissions, list) or not all(
            isinstance(p, str) and p for p in permissions
        ):
            raise BatchInputError(f"{where}: {agent}.permissions: must be a list of names")


def policy_copy_with_grants(policy_dir: str | Path, grants_file: str | Path, into: Path) -> Path:
    """Copy ``policy_dir`` to ``into`` and add the grants file's agents; returns ``into``.

    An agent the shipped document already has is replaced by the file's entry
    (for this run only)."""
    grants = read_mapping(grants_file, "grants file")
    _check_grants(grants, f"grants file {grants_file}")
    source = Path(policy_dir)
    if not (source / AGENTS_DATA).is_file():
        raise BatchInputError(f"policy folder {source}: {AGENTS_DATA} not found")
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(source, into)
    agents_file = into / AGENTS_DATA
    agents = read_mapping(agents_file, "agents document")
    agents.update(grants)
    header = f"# {AGENTS_DATA} for one batch run: the shipped agents plus those of {grants_file}.\n"
    agents_file.write_text(header + yaml.safe_dump(agents, sort_keys=True), encoding="utf-8")
    return into


__all__ = [
    "AGENTS_DATA",
    "BatchInputError",
    "PlanDocument",
    "load_plans",
    "parse_plans",
    "plan_document",
    "policy_copy_with_grants",
    "read_mapping",
]
