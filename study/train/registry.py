"""A name -> frozen-spec registry whose unknown names fail with the list of known ones."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Registry"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


class Registry(Generic[T]):
    """Registered specs by name, in registration order.

    Args:
        kind: what the entries are ("optimizer", "schedule", ...), for error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        """Add ``entry`` under ``entry.name``; the name must be new. Returns ``entry``."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is already registered.")
        self._entries[entry.name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ValueError: unknown name; the message lists the registered ones.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._entries)}."
            ) from None

    def unregister(self, name: str) -> T:
        """Remove and return the entry registered as ``name`` (a notebook cell run again,
        a test that registers its own).

        Raises:
            ValueError: unknown name; the message lists the registered ones.
        """
        entry = self.get(name)
        del self._entries[name]
        return entry

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())
