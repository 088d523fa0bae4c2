"""Interlock: a control plane for AI agents' tool calls.

The server lives in this package; the generated gRPC stubs in
:mod:`interlock.v1`. Importing the package is cheap: nothing here pulls in the
server's dependencies, so clients can use :mod:`interlock.v1` alone.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
