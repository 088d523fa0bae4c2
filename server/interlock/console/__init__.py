"""The operator console Interlock serves in the browser (docs/console.md)."""

from interlock.console.app import Console, Services

__all__ = ["Console", "Services"]
