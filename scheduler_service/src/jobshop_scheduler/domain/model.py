"""The job-shop problem and its schedule as plain immutable data.

A job is an ordered chain of operations; each operation lists its eligible machines with a
duration on each (the classic job shop is the case of exactly one alternative). Times are
integers in one unit (minutes by convention). Higher layers compile this into arrays for speed;
this form is what crosses the API and the validator.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Alternative:
    machine_id: str
    duration: int


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    alternatives: tuple[Alternative, ...]


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    operations: tuple[Operation, ...]
    release_time: int = 0
    due_date: int | None = None
    priority: int = 1


@dataclass(frozen=True, slots=True)
class Problem:
    machines: tuple[str, ...]
    jobs: tuple[Job, ...]
    request_id: str = ""

    @property
    def operation_count(self) -> int:
        return sum(len(job.operations) for job in self.jobs)


@dataclass(frozen=True, slots=True)
class Assignment:
    job_id: str
    operation_id: str
    machine_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Schedule:
    assignments: tuple[Assignment, ...]

    @property
    def makespan(self) -> int:
        return max((a.end for a in self.assignments), default=0)
