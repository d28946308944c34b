"""The gRPC service's edges: API keys, auth interceptor, TLS, audit trail and structured logs."""
