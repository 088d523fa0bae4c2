"""``python -m interlock``: the ``interlock`` command."""

from interlock.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
