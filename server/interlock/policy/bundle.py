"""A policy set: the Rego modules and data documents of one bundle folder.

The same folder works with ``opa run --server --bundle policies/`` and
``opa test policies/``: modules are ``*.rego`` files (``*_test.rego`` are
tests, never loaded for decisions: kept apart in ``tests`` for the reload
gate, :mod:`interlock.policy.gate`); ``data.yaml``/``data.yml``/``data.json``
files are data documents placed at their folder's path, as OPA does.

The revision is a SHA-256 over every loaded file's path and content, so the
same content always has the same revision, whatever the engine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interlock.errors import PolicyLoadError

DATA_FILES = ("data.yaml", "data.yml", "data.json")


def is_test_file(relpath: str) -> bool:
    """True for a Rego test module (``*_test.rego``)."""
    return relpath.rsplit("/", 1)[-1].endswith("_test.rego")


def is_policy_file(relpath: str) -> bool:
    """True for the files that make up a policy set (tests excluded)."""
    name = relpath.rsplit("/", 1)[-1]
    if name.endswith("_test.rego"):
        return False
    return name.endswith(".rego") or name in DATA_FILES or name == ".manifest"


@dataclass(frozen=True)
class PolicySet:
    """The files of a policy set, parsed, with their content revision."""

    files: Mapping[str, str]
    """Bundle-relative path -> content, for every loaded file."""
    source: str
    """Where the set came from: a folder path, or "inline"."""
    revision: str = ""
    modules: Mapping[str, str] = field(default_factory=dict)
    """Rego modules: path -> source."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """The merged data document (data.yaml files at their folder paths)."""
    tests: Mapping[str, str] = field(default_factory=dict)
    """Rego test modules (``*_test.rego``): path -> source. Not part of the
    revision and never loaded for decisions; the reload gate runs them."""

    @classmethod
    def from_files(cls, files: Mapping[str, str], *, source: str = "inline") -> PolicySet:
        """Parse a set of files; raise PolicyLoadError naming the file at fault."""
        kept = {}
        tests = {}
        for raw_path, content in files.items():
            path = raw_path.replace(os.sep, "/").lstrip("/")
            if not path or ".." in path.split("/"):
                raise PolicyLoadError(f"policy file path {raw_path!r} is not a relative path")
            if is_policy_file(path):
                kept[path] = content
            elif is_test_file(path):
                tests[path] = content
        modules = {p: c for p, c in kept.items() if p.endswith(".rego")}
        if not modules:
            raise PolicyLoadError(f"{source}: the policy set has no Rego modules")
        data: dict[str, Any] = {}
        for path in sorted(p for p in kept if p.rsplit("/", 1)[-1] in DATA_FILES):
            doc = _parse_data(path, kept[path])
            _place(data, path, doc)
        digest = hashlib.sha256()
        for path in sorted(kept):
            digest.update(path.encode() + b"\0" + kept[path].encode() + b"\0")
        return cls(
            files=kept,
            source=source,
            revision=digest.hexdigest(),
            modules=modules,
            data=data,
            tests=tests,
        )

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> PolicySet:
        root = Path(directory)
        if not root.is_dir():
            raise PolicyLoadError(f"policy folder {root} does not exist")
        return cls.from_files(read_dir(root), source=str(root))

    @property
    def short_revision(self) -> str:
        return self.revision[:12]


def _policy_files(root: Path, *, tests: bool = False) -> Iterator[tuple[str, Path]]:
    """(bundle-relative path, file) for every policy file (and test module,
    when asked) under root; hidden folders skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if is_policy_file(rel) or (tests and is_test_file(rel)):
                yield rel, full


def read_dir(root: Path) -> dict[str, str]:
    """Every policy file and test module under root, by bundle-relative path."""
    files = {}
    for rel, full in _policy_files(root, tests=True):
        try:
            files[rel] = full.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"{rel}: cannot read: {exc}") from None
    return files


def dir_fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap change detector: path, size and mtime of every policy file."""
    out = []
    for rel, full in _policy_files(root):
        try:
            st = full.stat()
        except OSError:
            continue
        out.append((rel, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _parse_data(path: str, content: str) -> Any:
    try:
        doc = json.loads(content) if path.endswith(".json") else yaml.safe_load(content)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyLoadError(
            f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}"
        ) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PolicyLoadError(f"{path}: a data document must be a mapping at the top level")
    problem = _not_json(doc, "")
    if problem:
        raise PolicyLoadError(f"{path}: {problem}")
    return doc


def _text_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a "\ud800" escape
        return False
    return True


def _not_json(value: Any, where: str) -> str:
    """What keeps a parsed document from being JSON data (the engines take JSON), or ""."""
    at = where or "the top level"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"at {at}: key {key!r} is not a string"
            if not _text_ok(key):
                return f"at {at}: a key is not valid Unicode (a lone surrogate escape)"
            problem = _not_json(item, f"{where}.{key}" if where else key)
            if problem:
                return problem
        return ""
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = _not_json(item, f"{where}[{i}]")
            if problem:
                return problem
        return ""
    if isinstance(value, str):
        return "" if _text_ok(value) else f"at {at}: text that is not valid Unicode"
    if isinstance(value, float) and not math.isfinite(value):
        return f"at {at}: {value} is not a JSON number"
    if value is None or isinstance(value, (bool, int, float)):
        return ""
    return f"at {at}: a {type(value).__name__} is not JSON data (quote it)"


def _place(data: dict[str, Any], path: str, doc: dict[str, Any]) -> None:
    node = data
    for part in path.split("/")[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise PolicyLoadError(f"{path}: data at {part!r} is defined twice")
        node = nxt
    for key, value in doc.items():
        if key in node:
            raise PolicyLoadError(f"{path}: data key {key!r} is defined twice")
        node[key] = value


__all__ = [
    "DATA_FILES",
    "PolicySet",
    "dir_fingerprint",
    "is_policy_file",
    "is_test_file",
    "read_dir",
]
