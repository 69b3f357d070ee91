"""A small name -> object registry with "did you mean" errors.

Models, hyperparameter sets, preprocess functions and quantizers are all looked up
by the names users type; a typo must answer with the valid choices and the closest
match, never with a bare ``KeyError``.
"""

import difflib
from typing import Callable, Dict, Generic, Iterator, List, Optional, TypeVar

from bnno.errors import UsageError

T = TypeVar("T")


def closest_match(name: str, choices: List[str]) -> Optional[str]:
    """The choice most similar to ``name``, or ``None`` when nothing is close."""
    matches = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_choice_message(kind: str, name: str, choices: List[str], where: str = "") -> str:
    """One sentence naming the bad ``name``, the valid ``choices`` and the closest.

    ``where`` places it, e.g. "for binarynet set 'bop'".
    """
    choices = sorted(set(choices))
    place = f" {where}" if where else ""
    message = f"Unknown {kind} '{name}'{place}; valid choices are: {', '.join(choices)}."
    match = closest_match(name, choices)
    if match is not None:
        message += f" Did you mean '{match}'?"
    return message


class Registry(Generic[T]):
    """Maps names to objects; register with a decorator, look up with ``get``."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice.")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``UsageError`` (a ``ValueError``) naming
        the choices and the closest one if there is none."""
        try:
            return self._entries[name]
        except KeyError:
            raise UsageError(unknown_choice_message(self.kind, name, self.names())) from None

    def names(self) -> List[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
