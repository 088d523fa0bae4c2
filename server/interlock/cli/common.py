"""Constants and the usage error shared by the CLI's modules."""

from __future__ import annotations

import logging
from typing import TypeVar

SERVER_ENV = "INTERLOCK_SERVER"
STOP_GRACE_SECONDS = 5.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
OUTCOME_CHOICES = ("succeeded", "failed", "timed_out")

_T = TypeVar("_T")

log = logging.getLogger("interlock.cli")


class UsageError(Exception):
    """Bad input on the command line (exit status 2)."""
