"""The Dockerfile parser: text to a list of `Node`s, one per instruction, with their lines.

A port of BuildKit's frontend/dockerfile/parser. Parser directives (`# escape=`, `# syntax=`,
`# check=`) are read only from the comment lines at the very top. Comments are dropped, also
inside a continued instruction; the escape character at the end of a line continues it (empty
lines inside a continuation are skipped with a warning). RUN, COPY and ADD in shell form may
open heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, several on one line) whose bodies follow the
instruction. Each keyword splits its arguments its own way (see `Node`); a JSON form that does
not parse falls back to the shell form, as in Docker. Variables are not expanded here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from containers.engine.build.expand import ShellLex
from containers.engine.errors import DockerfileError

KEYWORDS = (
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
)  # fmt: skip

# Instructions whose shell form may open heredocs; ONBUILD may too, through its trigger.
_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})

_DIRECTIVES = frozenset({"syntax", "escape", "check"})
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"(\d*)<<(-?)\s*([^<]*)\Z")
_HEREDOC_SPACE = re.compile(r"<<(-?)[ \t]+")
_BOM = "\ufeff"


@dataclass(frozen=True)
class Heredoc:
    """A here-document: `<<NAME` (`expand` when no part of NAME is quoted, `chomp` for `<<-`).

    On a `Node`, `content` is the body as written, each line with its newline; the instructions
    strip the leading tabs of a `<<-` body.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False


@dataclass
class Node:
    """One instruction as written.

    `keyword` is lower case; `value` holds the arguments as BuildKit's parser splits them for
    that keyword: the JSON list for a JSON form (`json_form`); the one raw string of a shell form
    (RUN, CMD, ENTRYPOINT, SHELL, and WORKDIR, USER, STOPSIGNAL, MAINTAINER); whitespace-separated
    words (FROM, EXPOSE, and COPY, ADD, VOLUME when not JSON); key and value pairs flattened for
    ENV and LABEL (`[k1, v1, k2, v2]`, quotes kept); the words for ARG; `[type, command...]` for
    HEALTHCHECK; and for ONBUILD the trigger's keyword followed by its own value, the trigger
    being kept as `trigger`. `flags` are the leading `--x=y` words, quotes removed as BuildKit does.
    """

    keyword: str
    value: list[str]
    flags: list[str] = field(default_factory=list)
    json_form: bool = False
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    heredocs: list[Heredoc] = field(default_factory=list)
    trigger: Node | None = None


@dataclass
class Result:
    """A parsed Dockerfile: its directives, escape character, instructions and warnings."""

    directives: dict[str, str]
    escape: str
    nodes: list[Node]
    warnings: list[str]


def parse(text: str) -> Result:
    """Parse Dockerfile text; raise DockerfileError naming the line for what does not parse."""
    lines = _split_lines(text.removeprefix(_BOM))
    state = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    index = 0
    while index < len(lines):
        start_line = index + 1
        token = lines[index].rstrip("\r\n").lstrip()
        index += 1
        state.check(token, start_line)
        line, end = state.trim_continuation("" if _is_comment(token) else token)
        if end and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not end and index < len(lines):
            raw = lines[index]
            index += 1
            if _is_comment(raw):
                continue
            token = raw.rstrip("\r\n")
            if not token.strip():
                empty_continuation = True
                continue
            token, end = state.trim_continuation(token)
            parts.append(token)
        line = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {line}")
        try:
            node = _node_from_line(line, state.escape)
        except DockerfileError as err:
            raise DockerfileError(err.message, start_line, index) from None
        if node.keyword not in KEYWORDS:
            raise DockerfileError(unknown_instruction(_split_command(line)[0]), start_line, index)
        if _can_contain_heredoc(node) and "<<" in line:
            index = _read_heredocs(node, line, lines, index, start_line)
        node.start_line, node.end_line = start_line, index
        nodes.append(node)
    if not nodes:
        raise DockerfileError("file with no instructions", len(lines))
    return Result(directives=state.values, escape=state.escape, nodes=nodes, warnings=warnings)


def suggest(value: str, options: list[str] | tuple[str, ...]) -> str:
    """Return ` (did you mean X?)` for the option within two edits of `value`, else "" (BuildKit's suggest)."""
    lowered = value.lower()
    match, best = "", 3
    for option in options:
        if option == lowered:
            return ""
        distance = _levenshtein(lowered, option)
        if distance < best:
            match, best = option, distance
    if not match:
        return ""
    if value == value.upper() and value != value.lower():
        match = match.upper()
    return f" (did you mean {match}?)"


def unknown_instruction(keyword: str) -> str:
    """Return BuildKit's message for an unknown instruction, with a suggestion when one is close."""
    return f"unknown instruction: {keyword}{suggest(keyword, KEYWORDS)}"


def _split_lines(text: str) -> list[str]:
    """Split on newlines only, keeping them, as BuildKit's scanner does (no `\\r`-only breaks)."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


class _Directives:
    """The parser directives seen so far and the escape character they set."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.done = False
        self.escape = "\\"
        self._continuation = _continuation_regex(self.escape)

    def check(self, line: str, number: int) -> None:
        """Record `line` if it is a directive; directives end at the first line that is not one."""
        if self.done:
            return
        match = _DIRECTIVE.match(line[1:].lstrip()) if line.startswith("#") else None
        if not match or match[1].lower() not in _DIRECTIVES:
            self.done = True
            return
        name, value = match[1].lower(), match[2]
        if name in self.values:
            raise DockerfileError(f"only one {name} parser directive can be used", number)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"invalid escape token '{value}' does not match ` or \\", number)
            self.escape = value
            self._continuation = _continuation_regex(value)
        self.values[name] = value

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Remove a trailing escape character; return the line and whether the instruction ends here."""
        trimmed, count = self._continuation.subn(r"\1", line)
        return trimmed, count == 0


def _continuation_regex(escape: str) -> re.Pattern[str]:
    # The escape character continues the line unless it is itself escaped; BuildKit's expression
    # also misses an escaped escape before it ("foo \\\"), and so does this one.
    esc = re.escape(escape)
    return re.compile(rf"([^{esc}]){esc}[ \t]*\Z|^{esc}[ \t]*\Z")


def _node_from_line(line: str, escape: str) -> Node:
    keyword, flags, rest = _split_command(line)
    parse_args = _LINE_PARSERS.get(keyword.lower(), _parse_ignore)
    value, json_form, trigger = parse_args(rest, escape)
    return Node(keyword=keyword.lower(), value=value, flags=flags, json_form=json_form, original=line, trigger=trigger)


def _split_command(line: str) -> tuple[str, list[str], str]:
    """Split a line into its keyword, its flags and the rest of its arguments."""
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    if len(parts) < 2:
        return parts[0], [], ""
    rest, flags = _extract_flags(parts[1])
    return parts[0], flags, rest.strip()


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Take the leading `--flag[=value]` words off `line` (BuildKit's extractBuilderFlags).

    Quotes group and are removed and `\\` escapes in flags; a word `--` ends the flags.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = in_quote = blank_ok = False
    quote = ""
    pos = 0
    while pos <= len(line):
        ch = line[pos] if pos < len(line) else ""
        if not in_word and not in_quote:
            if not ch:
                break
            if ch.isspace():
                pos += 1
                continue
            if not line.startswith("--", pos):
                return line[pos:], words
            in_word = True
        if not ch:
            if "".join(word) != "--" and (blank_ok or word):
                words.append("".join(word))
            break
        if in_quote:
            if ch == quote:
                in_quote = False
            else:
                if ch == "\\":
                    if pos + 1 == len(line):
                        in_quote = False
                        pos += 1
                        continue
                    pos += 1
                    ch = line[pos]
                word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            in_word = False
            if "".join(word) == "--":
                return line[pos:], words
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
            pos += 1
            continue
        if ch in "'\"":
            quote, blank_ok, in_quote = ch, True, True
            pos += 1
            continue
        if ch == "\\":
            if pos + 1 == len(line):
                pos += 1
                continue
            pos += 1
            ch = line[pos]
        word.append(ch)
        pos += 1
    return "", words


# Line parsers: each returns (value, json_form, trigger) for the text after the keyword and flags.

_Parsed = tuple[list[str], bool, Node | None]
_LineParser = Callable[[str, str], _Parsed]


def _parse_ignore(rest: str, escape: str) -> _Parsed:
    return [], False, None


def _parse_string(rest: str, escape: str) -> _Parsed:
    return ([rest] if rest else []), False, None


def _parse_whitespace_delimited(rest: str, escape: str) -> _Parsed:
    return (_WHITESPACE.split(rest) if rest else []), False, None


def _parse_json(rest: str) -> list[str] | None:
    """Return the strings of a JSON array, or None when `rest` is not one.

    Like Go's json.Decoder, only the first JSON value counts; text after it is ignored. A valid
    array holding anything but strings is an error, not a shell form.
    """
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _parse_maybe_json(rest: str, escape: str) -> _Parsed:
    if not rest:
        return [], False, None
    value = _parse_json(rest)
    if value is not None:
        return value, True, None
    return [rest], False, None


def _parse_maybe_json_to_list(rest: str, escape: str) -> _Parsed:
    value = _parse_json(rest)
    if value is not None:
        return value, True, None
    return _parse_whitespace_delimited(rest, escape)


def _parse_health_config(rest: str, escape: str) -> _Parsed:
    sep = 0
    while sep < len(rest) and not rest[sep].isspace():
        sep += 1
    if sep == 0:
        return [], False, None
    command, json_form, _ = _parse_maybe_json(rest[sep:].lstrip(), escape)
    return [rest[:sep], *command], json_form, None


def _parse_sub_command(rest: str, escape: str) -> _Parsed:
    if not rest:
        return [], False, None
    child = _node_from_line(rest, escape)
    return [child.keyword, *child.value], False, child


def _parse_name_val(keyword: str) -> _LineParser:
    def parse_name_val(rest: str, escape: str) -> _Parsed:
        # Two syntaxes: the legacy `KEY name value...` (the first word has no `=`) and `KEY a=b c=d`.
        words = _parse_words(rest, escape)
        if not words:
            return [], False, None
        if "=" not in words[0]:
            parts = _WHITESPACE.split(rest, maxsplit=1)
            if len(parts) < 2:
                raise DockerfileError(f"{keyword} must have two arguments")
            return parts, False, None
        value: list[str] = []
        for word in words:
            if "=" not in word:
                raise DockerfileError(
                    f"Syntax error - can't find = in {json.dumps(word)}. Must be of the form: name=value"
                )
            value.extend(word.split("=", 1))
        return value, False, None

    return parse_name_val


def _parse_name_or_name_val(rest: str, escape: str) -> _Parsed:
    return _parse_words(rest, escape), False, None


def _parse_words(rest: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes (BuildKit's parseWords)."""
    words: list[str] = []
    word: list[str] = []
    in_word = in_quote = blank_ok = False
    quote = ""
    pos = 0
    while pos < len(rest):
        ch = rest[pos]
        if not in_word and not in_quote:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if in_quote:
            if ch == quote:
                in_quote = False
            # The escape character escapes in double quotes only, and is kept.
            if ch == escape and quote != "'":
                if pos + 1 == len(rest):
                    in_quote = False
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            in_word = False
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok = [], False
            pos += 1
            continue
        if ch in "'\"":
            quote, blank_ok, in_quote = ch, True, True
        if ch == escape:
            if pos + 1 == len(rest):
                pos += 1
                continue
            # Outside quotes an escape is kept with the character it escapes, even a quote.
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if (in_word or in_quote) and (blank_ok or word):
        words.append("".join(word))
    return words


_LINE_PARSERS: dict[str, _LineParser] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_name_val("ENV"),
    "expose": _parse_whitespace_delimited,
    "from": _parse_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_name_val("LABEL"),
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


# Heredocs


def _can_contain_heredoc(node: Node) -> bool:
    target = node.trigger if node.keyword == "onbuild" and node.trigger else node
    return target.keyword in _HEREDOC_KEYWORDS and not target.json_form


def parse_heredoc(word: str) -> Heredoc | None:
    """Return the heredoc that a word such as `<<EOF`, `<<-"EOF"` or `3<<EOF` opens, or None."""
    match = _HEREDOC.match(word)
    if not match or not match[3]:
        return None
    lex = ShellLex("\\", skip_unset=True)
    try:
        words = lex.process_words(match[3], {})
        raw_words = ShellLex("\\", raw_quotes=True, skip_unset=True).process_words(match[3], {})
    except DockerfileError:
        return None
    if len(words) != 1 or len(raw_words) != 1:
        return None
    # A quote anywhere in the delimiter (<<"EOF", <<E'OF') turns off expansion of the body.
    quotes = sum(words[0].count(q) for q in "'\"")
    raw_quotes = sum(raw_words[0].count(q) for q in "'\"")
    return Heredoc(name=words[0], content="", expand=quotes == raw_quotes, chomp=match[2] == "-")


def _heredocs_from_line(line: str) -> list[Heredoc]:
    lex = ShellLex("\\", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lex.process_words(_HEREDOC_SPACE.sub(r"<<\1", line), {})
    except DockerfileError:
        return []
    return [heredoc for word in words if (heredoc := parse_heredoc(word))]


def _read_heredocs(node: Node, line: str, lines: list[str], index: int, start_line: int) -> int:
    """Read the bodies of the heredocs opened on `line` from `lines[index:]`; return the next index."""
    for heredoc in _heredocs_from_line(line):
        body: list[str] = []
        while True:
            if index == len(lines):
                raise DockerfileError("unterminated heredoc", start_line, index)
            raw = lines[index]
            index += 1
            candidate = raw.rstrip("\r\n")
            if heredoc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == heredoc.name:
                break
            body.append(raw)
        node.heredocs.append(Heredoc(heredoc.name, "".join(body), heredoc.expand, heredoc.chomp))
    return index


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]
