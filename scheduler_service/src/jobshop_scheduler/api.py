"""The one import point for the generated gRPC stubs (built from protos/scheduler/v1)."""

from jobshop_scheduler._generated.scheduler.v1 import scheduler_pb2 as pb
from jobshop_scheduler._generated.scheduler.v1 import scheduler_pb2_grpc as pb_grpc

__all__ = ["pb", "pb_grpc"]
