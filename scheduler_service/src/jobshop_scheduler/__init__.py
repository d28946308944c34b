"""Job-shop scheduling service: a PPO dispatching policy behind a gRPC API.

Layers, lowest first (lower never imports higher): domain ← heuristics / environment ← policy ←
server. The gRPC stubs in `_generated` are produced by the build from protos/.
"""

__version__ = "0.1.0"
