""".dockerignore: reading the patterns and matching context paths (a port of moby/patternmatcher).

A pattern is a path relative to the context root: `*` and `?` match within one path element,
`[...]` a character class, `**` any number of elements, and `\\` escapes. A path is excluded
when it or one of its parent directories matches, so `docs` excludes everything under docs/.
Patterns are read in order and the last one that matches decides: `!pattern` re-includes. This
is hand-written rather than fnmatch because fnmatch's `*` crosses `/` and it knows no `**`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from containers.engine.errors import InvalidArgument

# Characters that mean something to a regular expression but nothing to a pattern (moby's shouldEscape).
_ESCAPED = frozenset(".+()|{}$")


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern; `exclusion` for `!pattern` (which re-includes what it matches)."""

    text: str
    exclusion: bool = False
    _kind: str = field(default="", init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_syntax(self.text)
        kind, regex = _compile(self.text)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_regex", regex)

    @property
    def dirs(self) -> list[str]:
        """Return the pattern's path elements."""
        return self.text.split("/")

    def match(self, path: str) -> bool:
        """Return whether the pattern matches `path` itself (not its parents)."""
        if self._kind == "exact":
            return path == self.text
        if self._kind == "prefix":
            return path.startswith(self.text[:-2])
        if self._kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self._regex is not None
        return self._regex.match(path) is not None


def read_patterns(text: str) -> list[Pattern]:
    """Read a .dockerignore: skip comments and blank lines, clean paths, mark `!` exceptions.

    Raise InvalidArgument for a malformed pattern (`[`, a lone `!`), as Docker refuses the build.
    """
    patterns: list[Pattern] = []
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        # Only a `#` in the first column starts a comment; the rest of the line is trimmed after.
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            # normpath keeps a leading "//"; moby's filepath.Clean does not.
            line = line.lstrip("/") or "/"
        if exclusion and not line:
            raise InvalidArgument(f'.dockerignore line {number}: illegal exclusion pattern: "!"')
        try:
            patterns.append(Pattern(line, exclusion))
        except InvalidArgument as err:
            raise InvalidArgument(f".dockerignore line {number}: {err}") from None
    return patterns


class Matcher:
    """Decide which context paths are excluded; the last matching pattern wins."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.exclusions = any(pattern.exclusion for pattern in patterns)

    def matches(self, path: str) -> bool:
        """Return whether `path` (relative to the context root, `/`-separated) is excluded.

        A pattern applies when it matches the path or one of its parent directories
        (moby's MatchesOrParentMatches). The context root itself is never excluded.
        """
        path = posixpath.normpath(path).lstrip("/")
        if path in ("", "."):
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            # An inclusion cannot change a path already excluded, nor an exception one not excluded.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def excludes_dir_entirely(self, dir_path: str) -> bool:
        """Return whether `dir_path` is excluded with nothing below it that an exception could re-include.

        When this is true the context walker may skip the directory without reading it.
        """
        if not self.matches(dir_path):
            return False
        if not self.exclusions:
            return True
        dirs = posixpath.normpath(dir_path).lstrip("/").split("/")
        return not any(pattern.exclusion and _may_match_below(pattern, dirs) for pattern in self.patterns)


def _may_match_below(pattern: Pattern, dirs: list[str]) -> bool:
    """Return whether `pattern` could match a path strictly below the directory `dirs`.

    A pattern with as many elements as the directory or fewer matches a path below it only by
    matching the directory or one of its parents, which `matches(dir)` has already weighed.
    `**` and character classes (which may match `/`) are assumed to reach anywhere.
    """
    if "**" in pattern.text or "[" in pattern.text:
        return True
    elements = pattern.dirs
    if len(elements) <= len(dirs):
        return False
    return all(Pattern(element).match(name) for element, name in zip(elements, dirs, strict=False))


def _compile(pattern: str) -> tuple[str, re.Pattern[str] | None]:
    """Classify a pattern (exact, prefix `dir/**`, suffix `**/name`, or regex) as moby's compile().

    Characters are copied to the expression as they are, as moby does, so that classes such as
    `[a-z]` keep their meaning; only those special to expressions alone are escaped.
    """
    regex = ["^"]
    kind = "exact"
    i = 0
    first = True
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*" and pattern[i : i + 1] == "*":
            i += 1
            # `**/` is `**`: eat the slash.
            if pattern[i : i + 1] == "/":
                i += 1
            if i == len(pattern):
                # A trailing `**` matches everything below, as in .gitignore.
                if kind == "exact":
                    kind = "prefix"
                else:
                    regex.append(".*")
                    kind = "regex"
            else:
                # Any number of elements, even none.
                regex.append("(.*/)?")
                kind = "regex"
            if first:
                kind = "suffix"
        elif ch == "*":
            regex.append("[^/]*")
            kind = "regex"
        elif ch == "?":
            regex.append("[^/]")
            kind = "regex"
        elif ch in _ESCAPED:
            regex.append("\\" + ch)
        elif ch == "\\":
            if i < len(pattern):
                regex.append("\\" + pattern[i])
                i += 1
                kind = "regex"
            else:
                regex.append("\\\\")
        elif ch in "[]":
            regex.append(ch)
            kind = "regex"
        else:
            regex.append(ch)
        first = False
    if kind != "regex":
        return kind, None
    try:
        return kind, re.compile("".join(regex) + r"\Z")
    except re.error as err:
        raise InvalidArgument(f"syntax error in pattern {pattern}: {err}") from None


def _check_syntax(pattern: str) -> None:
    """Refuse what Go's filepath.Match calls a bad pattern: unclosed `[`, bad ranges, a trailing `\\`."""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "\\":
            if i == len(pattern):
                raise InvalidArgument("syntax error in pattern")
            i += 1
        elif ch == "[":
            i = _check_class(pattern, i)


def _check_class(pattern: str, i: int) -> int:
    """Check the character class opened just before `i`; return the index after its `]`."""
    if pattern[i : i + 1] == "^":
        i += 1
    ranges = 0
    while True:
        if pattern[i : i + 1] == "]" and ranges:
            return i + 1
        i = _class_char(pattern, i)
        if pattern[i : i + 1] == "-":
            i = _class_char(pattern, i + 1)
        ranges += 1


def _class_char(pattern: str, i: int) -> int:
    """Check one (possibly escaped) character of a class at `i`; return the index after it."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise InvalidArgument("syntax error in pattern")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise InvalidArgument("syntax error in pattern")
    i += 1
    # A class must close: running out right after a character is an error too.
    if i >= len(pattern):
        raise InvalidArgument("syntax error in pattern")
    return i
