"""Real servers on loopback for tests and the demo.

Each server runs as a child process on free 127.0.0.1 ports in a private directory, and is torn
down with it; the end-to-end platform's pods get addresses of their own in the network namespace
the test run creates (scripts/netns). Nothing here is a mock: the point is to exercise the exact
binaries production uses.
"""

from testbed.binaries import MissingBinaryError
from testbed.node import NetworkNamespaceError
from testbed.process import ServerStartError

__all__ = ["MissingBinaryError", "NetworkNamespaceError", "ServerStartError"]
