"""Variable expansion and word splitting with Docker's rules (a port of BuildKit's shell/lex.go).

Docker does not run a shell to expand `$VARS` in ENV, ARG, COPY, WORKDIR and the like: it uses
this small lexer, which knows `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?m}`,
`${V?m}`, `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}` and `${V//p/r}`; single quotes are
literal, double quotes expand, and the escape character (`\\` or `` ` ``) escapes one character. An
unset variable expands to nothing. Anything else (`${#V}`, `${V=w}`) is an error, as in BuildKit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from containers.engine.errors import DockerfileError

# Go's unicode.IsSpace; str.isspace() also accepts the ASCII separators \x1c-\x1f.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_EOF = ""


class _ExpansionError(Exception):
    """A lexing error, wrapped with the whole input by `ShellLex`."""


class ShellLex:
    """Expand variables and remove quotes in Dockerfile words.

    `raw_quotes` keeps the quote characters in the result, `raw_escapes` keeps the escape
    characters, and `skip_unset` leaves references to unset variables as written: the parser uses
    those to find heredoc markers without changing the text.
    """

    def __init__(
        self, escape: str = "\\", *, raw_quotes: bool = False, raw_escapes: bool = False, skip_unset: bool = False
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """Expand one word: quotes are removed, variables substituted, nothing split."""
        return self._process(word, env)[0]

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """Expand and split into words on unquoted whitespace (also inside expanded values)."""
        return self._process(text, env)[1]

    def _process(self, text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
        word = _ShellWord(self, text, env)
        try:
            return word.process_stop_on(_EOF, self.raw_escapes)
        except _ExpansionError as err:
            raise DockerfileError(f"failed to process {json.dumps(text, ensure_ascii=False)}: {err}") from None


class _Words:
    """Accumulate the words of a text being expanded, as BuildKit's wordsStruct."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _SPACES:
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _ShellWord:
    """One expansion in progress: a cursor over the text and the options of its `ShellLex`."""

    def __init__(self, lex: ShellLex, text: str, env: Mapping[str, str]) -> None:
        self.lex = lex
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lex.raw_escapes

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def process_stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Expand up to `stop` (consumed) or the end of the text when `stop` is empty."""
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        escape = self.lex.escape
        while self.peek() != _EOF:
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.get_words()
            if ch == "$":
                value = self.process_dollar()
                result.append(value)
                words.add_string(value)
                continue
            if ch in "'\"":
                value = self.process_single_quote() if ch == "'" else self.process_double_quote()
                result.append(value)
                words.add_raw_string(value)
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    words.add_raw_char(ch)
                    result.append(ch)
                ch = self.next()
                if ch == _EOF:
                    break
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop:
            raise _ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        # Everything up to the next ' is literal, and ' itself cannot be escaped (sh(1)).
        result: list[str] = []
        quote = self.next()
        if self.lex.raw_quotes:
            result.append(quote)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise _ExpansionError("unexpected end of statement while looking for matching '")
            if ch == "'":
                if self.lex.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        # Everything up to the next unescaped " is literal except $; the escape character only
        # escapes ", $ and itself, and stays as written before anything else (sh(1)).
        result: list[str] = []
        escape = self.lex.escape
        quote = self.next()
        if self.lex.raw_quotes:
            result.append(quote)
        while True:
            peek = self.peek()
            if peek == _EOF:
                raise _ExpansionError('unexpected end of statement while looking for matching "')
            if peek == '"':
                self.next()
                if self.lex.raw_quotes:
                    result.append(peek)
                return "".join(result)
            if peek == "$":
                result.append(self.process_dollar())
                continue
            ch = self.next()
            if ch == escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following == _EOF:
                    continue
                if following in ('"', "$", escape):
                    ch = self.next()
            result.append(ch)

    def process_dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset:
                return "$" + name
            return value

        self.next()
        peek = self.peek()
        if peek == _EOF:
            raise _ExpansionError("syntax error: missing '}'")
        if peek in "{}:":
            raise _ExpansionError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.next()
        if ch == _EOF:
            raise _ExpansionError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset:
                return "${" + name + "}"
            return value
        if ch in ":+-?#%":
            return self._process_modifier(name, ch)
        if ch == "/":
            return self._process_replacement(name)
        raise _ExpansionError(f"unsupported modifier ({ch}) in substitution")

    def _process_modifier(self, name: str, ch: str) -> str:
        modifier = ch
        null_is_unset = ch == ":"
        if null_is_unset:
            ch = self.next()
            modifier += ch
        try:
            word, _ = self.process_stop_on("}", ch in ("#", "%"))
        except _ExpansionError:
            if self.peek() == _EOF:
                raise _ExpansionError("syntax error: missing '}'") from None
            raise
        value, found = self.get_env(name)
        if self.lex.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise _ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            # One # or % removes the shortest match, two the longest.
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            return _trim_suffix(word, value, greedy) if ch == "%" else _trim_prefix(word, value, greedy)
        raise _ExpansionError(f"unsupported modifier ({modifier}) in substitution")

    def _process_replacement(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.process_stop_on("/", True)
        except _ExpansionError:
            if self.peek() == _EOF:
                raise _ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.process_stop_on("}", True)
        except _ExpansionError:
            if self.peek() == _EOF:
                raise _ExpansionError("syntax error: missing '}'") from None
            raise
        value, found = self.get_env(name)
        if self.lex.skip_unset and not found:
            sep = "//" if replace_all else "/"
            return "${" + name + sep + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True, anchored=False)
        return regex.sub(lambda _: replacement, value, count=0 if replace_all else 1)

    def process_name(self) -> str:
        """Read a variable name: letters, digits and `_`; all digits; or one special parameter."""
        name: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not name and ch.isdecimal():
                while self.peek() != _EOF and self.peek().isdecimal():
                    name.append(self.next())
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name.append(self.next())
        return "".join(name)

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Convert a shell pattern (`*`, `?`, escapes; no brackets) to a regular expression."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            following = pattern[i] if i < len(pattern) else ""
            # `}` and `/` are escaped only to get them past the ${} parser.
            if following in ("}", "/"):
                continue
            if following not in ("*", "?", "\\"):
                raise _ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'")
            out.append("\\" + following)
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = _pattern_regex(pattern, greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each escape before the character it escapes: `a\\*c` -> `c\\*a`."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            tokens.append(pattern[i : i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regular expression cannot find the shortest rightmost match, so reverse both and trim a prefix.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
