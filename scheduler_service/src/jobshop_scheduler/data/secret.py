"""A secret that cannot leak by accident: masked in repr, str and format, scrubbed from errors.

The database password travels from a file or the environment to the driver and nowhere else.
Wrapping it means a ``print(settings)``, a log line or an f-string shows ``********``; the one
way to read it is the explicit ``reveal()``, which is easy to audit with grep.
"""

from __future__ import annotations

import hmac

MASK = "********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)  # equal secrets must hash equal; the value itself is not exposed

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable: it would write the value out")

    def scrub(self, text: str) -> str:
        """``text`` with every occurrence of the value (raw or repr-escaped) masked."""
        if not self._value:
            return text
        for form in {self._value, repr(self._value)[1:-1]}:
            text = text.replace(form, MASK)
        return text
