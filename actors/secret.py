"""A string that does not leak into logs, reprs or tracebacks by accident.

Shared by the server and the in-container agent.
"""

from __future__ import annotations


class Secret:
    """Holds a secret value; ``repr``/``str`` show only a masked hint.

    The hint (first 4 and last 4 characters) lets an operator tell two tokens
    apart in a log line without making either usable. Values too short for a
    hint to be safe are masked completely. ``reveal()`` is the one way out,
    so every use of the real value is greppable.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        if len(self._value) < 16:
            return "…"
        return f"{self._value[:4]}…{self._value[-4:]}"

    def __repr__(self) -> str:
        return f"Secret({self.masked})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not serialisable")


def mask(value: str) -> str:
    """The recognisable form of a secret value."""
    return Secret(value).masked
