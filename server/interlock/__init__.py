"""Interlock: a control plane for AI agents' tool calls.

The server lives in this package. The generated gRPC stubs ship in the
interlock-client distribution (:mod:`interlock_client.v1`), which the server
depends on; :mod:`interlock.v1` is the server's alias for them. Importing the
package is cheap: nothing here pulls in the server's dependencies.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
