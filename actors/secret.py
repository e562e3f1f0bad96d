"""A string that never shows itself in logs, errors or ``repr()``."""

from __future__ import annotations


def mask(value: str) -> str:
    """The recognisable form of a secret: first characters and last four."""
    if len(value) <= 12:
        return "****"
    return f"{value[:6]}…{value[-4:]}"


class Secret:
    """Wraps a secret value; only ``reveal()`` gives it back."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def masked(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.masked})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not serialisable")
