"""Human approvals: server-owned, bound to one call, single use, expiring.

A decision the policy holds (PENDING_APPROVAL) gets an approval, committed
in the same transaction as the decision. It records what it covers: the
agent, the tool, a SHA-256 of the canonical arguments and the policy
revision, plus what it needs from the approvals policy: the roles that may
approve, how many distinct approvers, its time to live and an escalation
chain.

Operators resolve it (:meth:`Approvals.resolve`); who they are comes from
authentication. When the quorum is reached it is APPROVED; one denial makes
it DENIED; past its TTL without a quorum it is EXPIRED, and the held call is
denied by default. Every SLA step of the escalation chain that passes
unanswered adds that step's roles to the approvers, with an event.

An APPROVED approval is used up by the call it covers (USED): a
RequestToolCall presenting its id, or the plan step it held. It does not
cover a call with other arguments, tool or agent, nor a call after a policy
change that asks more of it (see :func:`covers`).

Pending and approved approvals are kept in memory and in SQLite; a restart
reloads them with their absolute deadlines, and one timer task expires and
escalates them.
"""

from interlock.approvals.record import STATES, Approval, covers
from interlock.approvals.service import Approvals

__all__ = ["STATES", "Approval", "Approvals", "covers"]
