"""Host built-ins for an OPA wasm policy: the ones Interlock's policies need.

The wasm module carries most of Rego's built-ins; those it lists in its
`builtins` export are called back on the host. For decision.main that is
only `sprintf`. Its semantics follow OPA's (topdown `sprintf`: Go's
fmt.Sprintf over the arguments converted as OPA converts them) for the verbs
the policies use: %v, %s, %d, %%, and %g / %f / %e with an optional
precision (%.6g). Anything else raises, so the benchmark stops rather than
answer differently from OPA.

Arguments arrive as JSON (opa_json_dump), so a JSON integer is an int here
and any other number a float; OPA passes a number that is an integer as an
int and others as float64, which is the same split for the values the
policies pass. Values that are neither strings nor numbers are printed as
OPA prints a Rego term (`["a", "b"]`, `{"k": 1}`, `null`, `true`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

_VERB = re.compile(r"%(?:(%)|(?:\.(\d+))?([vsdgfe]))")


class UnsupportedFormat(Exception):
    pass


def go_float_v(x: float) -> str:
    """Go's %v of a float64 (strconv.FormatFloat(x, 'g', -1, 64)).

    The shortest digits that round-trip, as Python's repr, but in the
    exponent form when the decimal exponent is < -4 or >= 6 (Python: 16),
    and with no ".0" on whole numbers: 30.0 prints "30", 1e6 "1e+06".
    """
    if x != x or x in (float("inf"), float("-inf")):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(x)]
    if x == 0:
        return "-0" if str(x).startswith("-") else "0"
    _sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exponent, int)
    nd = len(digits)
    dp = nd + exponent  # the decimal point's position after the digits' first
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return format(x, f".{nd - 1}e")
    return format(x, f".{max(nd - dp, 0)}f")


def rego_repr(value: Any) -> str:
    """A JSON value as OPA prints the Rego term (ast.Term.String)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(rego_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ", ".join(f"{rego_repr(k)}: {rego_repr(v)}" for k, v in items) + "}"
    raise UnsupportedFormat(f"no Rego form for {type(value).__name__}")


def _arg(value: Any) -> str | int | float:
    """An argument as OPA hands it to fmt.Sprintf: string, integer, float, or its Rego text."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return rego_repr(value)
    if isinstance(value, (str, int, float)):
        return value
    raise UnsupportedFormat(f"unexpected argument {value!r}")


def sprintf(fmt: str, args: list[Any]) -> str:
    """OPA's sprintf(format, args) for the verbs listed in the module docstring."""
    values = [_arg(a) for a in args]
    out: list[str] = []
    pos = 0
    i = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        if m.group(1):
            out.append("%")
            continue
        prec, verb = m.group(2), m.group(3)
        if i >= len(values):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = values[i]
        i += 1
        if verb in "vs" and prec is None:
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, int):
                out.append(str(v))
            else:
                out.append(go_float_v(v))
        elif verb == "d" and prec is None and isinstance(v, int):
            out.append(str(v))
        elif verb in "gfe" and isinstance(v, float):
            spec = f".{prec}{verb}" if prec is not None else ("" if verb == "g" else verb)
            out.append(go_float_v(v) if spec == "" else format(v, spec))
        else:
            raise UnsupportedFormat(f"sprintf {m.group(0)!r} of {v!r} is not implemented")
    out.append(fmt[pos:])
    if i < len(values):
        raise UnsupportedFormat(f"sprintf: {len(values) - i} extra argument(s) for {fmt!r}")
    return "".join(out)


HOST_BUILTINS = {"sprintf": sprintf}
