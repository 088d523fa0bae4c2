"""Grants: standing approvals with an expiry and a use count (docs/grants.md).

An approver lets one agent call one tool, with arguments that satisfy a
constraint, for one plan or any call, until a time and up to a number of
uses, without a new approval each time. The server offers the policy the
grants that match a call that would need an approval (``input.grants``); the
policy decides which, if any, covers it (``data.interlock.grants``); the
decision names it and counts its use atomically across replicas.

Layout::

    record.py   Grant, its Constraint (exact values, patterns, a JSON Schema subset)
    service.py  create, list, revoke, expire; candidates for a call; a use's rows
"""

from interlock.grants.record import STATES, Constraint, Grant
from interlock.grants.service import Grants, GrantTaken

__all__ = ["STATES", "Constraint", "Grant", "GrantTaken", "Grants"]
