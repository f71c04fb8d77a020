"""One grammar for naming modules, used by every option that names them.

A pattern is one of:

* ``"all-linear"``: every module a registered handler can code (``target_modules`` only);
* ``"re:<regex>"``: a regular expression, ``re.fullmatch``-ed against the qualified name
  (the prefix marks it explicitly, as torchao does, so ``"net.2"`` can never mean ``net12``);
* anything else: a module name, matching that exact qualified name or any name ending in
  ``"." + pattern`` (so ``"2"`` names ``net.2`` and ``enc.2``, never ``net12``).

``target_modules``, ``exclude_modules`` and the keys of ``s_pattern`` / ``value_bits_pattern``
all go through :func:`matches`, so one name means the same thing everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TypeVar

from ..errors import SINRConfigError

ALL_LINEAR = "all-linear"
REGEX_PREFIX = "re:"
_REGEX_HINT = re.compile(r"[\\\[\]()*+?^$|{}]")

T = TypeVar("T")


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern[len(REGEX_PREFIX):])
    except re.error as exc:
        raise SINRConfigError(f"pattern {pattern!r} is not a valid regex: {exc}") from None


def is_regex(pattern: str) -> bool:
    return pattern.startswith(REGEX_PREFIX)


def check_pattern(pattern: object, what: str) -> None:
    """Raise :class:`SINRConfigError` unless ``pattern`` is a usable pattern."""
    if not isinstance(pattern, str) or not pattern:
        raise SINRConfigError(f"{what}: a pattern must be a non-empty string, got {pattern!r}")
    if is_regex(pattern):
        _compiled(pattern)


def matches(name: str, pattern: str) -> bool:
    """Whether the qualified module ``name`` is named by ``pattern`` (see the module docstring)."""
    if pattern == ALL_LINEAR:
        return True
    if is_regex(pattern):
        return _compiled(pattern).fullmatch(name) is not None
    return name == pattern or name.endswith("." + pattern)


def as_patterns(value: str | Iterable[str] | None) -> list[str]:
    """A target/exclusion option as a list of patterns (a single string is one pattern)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def matches_any(name: str, patterns: str | Iterable[str] | None) -> bool:
    return any(matches(name, p) for p in as_patterns(patterns))


def unused_patterns(patterns: str | Iterable[str] | None, names: Iterable[str]) -> list[str]:
    """The patterns that name none of ``names`` (a typo, or a module that does not exist)."""
    names = list(names)
    return [p for p in as_patterns(patterns) if p != ALL_LINEAR and not any(matches(n, p) for n in names)]


def lookup(name: str, mapping: Mapping[str, T], default: T) -> T:
    """The value of the most specific pattern naming ``name``: an exact name first, then the
    longest matching suffix, then the first matching regex (in the mapping's order)."""
    if name in mapping:
        return mapping[name]
    suffixes = [p for p in mapping if not is_regex(p) and matches(name, p)]
    if suffixes:
        return mapping[max(suffixes, key=len)]
    for pattern, value in mapping.items():
        if is_regex(pattern) and matches(name, pattern):
            return value
    return default


def regex_hint(pattern: str) -> str:
    """A hint for a name pattern that looks like a regex but is not marked as one."""
    if not is_regex(pattern) and _REGEX_HINT.search(pattern):
        return f" ({pattern!r} is matched as a name; write 're:{pattern}' for a regex)"
    return ""
