"""Signals aimed at one thread of another process."""

from __future__ import annotations

import ctypes
import os
import platform

import pytest

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def signal_a_thread(pid: int, sig: int) -> bool:
    """Send ``sig`` to one thread of ``pid`` other than its main thread (tgkill),
    as the kernel may do with a signal sent to the whole process; False if the
    process runs no other thread."""
    number = SYS_TGKILL.get(platform.machine())
    if number is None:
        pytest.skip(f"no tgkill syscall number known for {platform.machine()}")
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    if not tids:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(number, pid, tids[0], sig)) == 0
