"""The one import point for the generated gRPC stubs (built from protos/scheduler/v1)."""

from jobshop_scheduler._generated.scheduler.v1 import scheduler_pb2 as pb
from jobshop_scheduler._generated.scheduler.v1 import scheduler_pb2_grpc as pb_grpc

# "scheduler.v1.Scheduler": the name health, reflection and routes know the service by.
SCHEDULER_SERVICE: str = pb.DESCRIPTOR.services_by_name["Scheduler"].full_name
SCHEDULE_METHOD = f"/{SCHEDULER_SERVICE}/Schedule"

__all__ = ["SCHEDULER_SERVICE", "SCHEDULE_METHOD", "pb", "pb_grpc"]
