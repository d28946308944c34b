"""Every version of a kind of object the API server announces, kept in order, so a test can
assert an exact sequence of states instead of sampling them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

Obj = dict[str, Any]


@dataclass(frozen=True)
class Seen:
    at: float  # wall clock (epoch seconds) when the watch delivered it
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


class Recorder:
    """Watches one kind of object in a namespace on a thread and keeps every version announced
    (re-watching from the last resourceVersion, so nothing is lost between watch calls).

    ``start`` lists the objects before it returns and the watch begins at that list's
    resourceVersion: a change made after ``start`` is never missed because the thread's first
    watch call reached the API server late."""

    def __init__(self, list_fn: Callable[..., Any], *args: Any, sanitize: Any = None) -> None:
        self._list_fn, self._args, self._sanitize = list_fn, args, sanitize
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[Seen] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._version: str | None = None

    def start(self) -> Recorder:
        listed = self._list_fn(*self._args)
        if self._sanitize is not None:
            listed = self._sanitize(listed)
        now = time.time()
        self._seen.extend(Seen(now, "ADDED", obj) for obj in listed.get("items") or [])
        self._version = listed["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def of(self, name: str) -> list[Seen]:
        return [s for s in self.seen if s.obj.get("metadata", {}).get("name") == name]

    def _run(self) -> None:
        version = self._version
        while not self._stop.is_set():
            w = watch.Watch()  # type: ignore[no-untyped-call]
            kwargs: Obj = {"timeout_seconds": 1, "_request_timeout": 5}
            if version:
                kwargs["resource_version"] = version
            try:
                for event in w.stream(self._list_fn, *self._args, **kwargs):  # type: ignore[no-untyped-call]
                    obj = event["object"]
                    if self._sanitize is not None:
                        obj = self._sanitize(obj)
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    with self._lock:
                        self._seen.append(Seen(time.time(), event["type"], obj))
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:  # too old: list again
                    version = None
                else:
                    time.sleep(0.2)
            except Exception:  # a dropped connection: watch again from where we were
                time.sleep(0.2)
            finally:
                w.stop()  # type: ignore[no-untyped-call]
