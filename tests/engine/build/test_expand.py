"""Variable expansion and word splitting, case by case with Docker's expected results.

The expected values are those of BuildKit's lexer tests (shell/envVarTest, wordsTest and
lex_test.go), which Docker's documentation describes: `$V`/`${V}`, the `-`/`+`/`?` modifiers with
and without `:`, `#`/`%` trimming, `/` replacement, quotes and escapes.
"""

from __future__ import annotations

import pytest

from containers.engine.build.expand import ShellLex
from containers.engine.errors import DockerfileError, InvalidArgument

ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}
ERROR = object()


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("hello", "hello"),
        ("he'll'o", "hello"),
        ("he'llo", ERROR),
        ("he\\'llo", "he'llo"),
        ("he\\\\'llo", ERROR),
        ("abc\\tdef", "abctdef"),
        ('"abc\\tdef"', "abc\\tdef"),
        ('"abc\\\\tdef"', "abc\\tdef"),
        ("'abc\\tdef'", "abc\\tdef"),
        ("hello\\", "hello"),
        ("hello\\\\", "hello\\"),
        ('"hello', ERROR),
        ('"hello\\"', ERROR),
        ('"hel\'lo"', "hel'lo"),
        ("'hello", ERROR),
        ("'hello\\'", "hello\\"),
        ("'hello\\there'", "hello\\there"),
        ("\"''\"", "''"),
        ("$.", "$."),
        ("he$1x", "hex"),
        ("he$.x", "he$.x"),
        ("he$pwd.", "he."),
        ("he$PWD", "he/home"),
        ("he\\$PWD", "he$PWD"),
        ("he\\\\$PWD", "he\\/home"),
        ('"he\\$PWD"', "he$PWD"),
        ('"he\\\\$PWD"', "he\\/home"),
        ("\\${}", "${}"),
        ("he\\${}xx", "he${}xx"),
        ("${}", ERROR),
        ("he${}xx", ERROR),
        ("he${hi}xx", "hexx"),
        ("he${PWD}", "he/home"),
        ("he${.}", ERROR),
        ("he${XXX:-000}xx", "he000xx"),
        ("he${PWD:-000}xx", "he/homexx"),
        ("he${XXX:-$PWD}xx", "he/homexx"),
        ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
        ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
        ("he${XXX:YYY}", ERROR),
        ("he${XXX?}", ERROR),
        ("he${XXX:?}", ERROR),
        ("he${PWD?}", "he/home"),
        ("he${PWD:?}", "he/home"),
        ("he${NULL?}", "he"),
        ("he${NULL:?}", ERROR),
        ("he${XXX:+${PWD}}xx", "hexx"),
        ("he${PWD:+${XXX}}xx", "hexx"),
        ("he${PWD:+${SHELL}}xx", "hebashxx"),
        ("he${XXX:+000}xx", "hexx"),
        ("he${PWD:+000}xx", "he000xx"),
        ("'he${XX}'", "he${XX}"),
        ('"he${PWD}"', "he/home"),
        ("\"he'$PWD'\"", "he'/home'"),
        ('"$PWD"', "/home"),
        ("'$PWD'", "$PWD"),
        ("'\\$PWD'", "\\$PWD"),
        ("'\"hello\"'", '"hello"'),
        ("'he\\$PWD'", "he\\$PWD"),
        ("he${PWD", ERROR),
        ("he${PWD=000}xx", ERROR),
        ("he${PWD+${PWD}:}xx", "he/home:xx"),
        ("he${XXX+${SHELL}:}xx", "hexx"),
        ("x${PWD-${SHELL}:}xx", "x/homexx"),
        ("${KOREAN}", "한국어"),
        ("안녕${KOREAN}", "안녕한국어"),
        ("${#PWD}", ERROR),
    ],
)
def test_it_expands_words_as_docker_does(word: str, expected: object) -> None:
    lex = ShellLex()
    if expected is ERROR:
        with pytest.raises(DockerfileError):
            lex.process_word(word, ENV)
    else:
        assert lex.process_word(word, ENV) == expected


@pytest.mark.parametrize(
    ("word", "env", "expected"),
    [
        ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx  ccc"),
        ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", {"FOO": "xxx", "BAR": ""}, "xxx bbb ccc"),
        ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa bbb "),
        ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", {"FOO": "xxx", "BAR": ""}, "aaa  "),
        ("${BAR?bbb}", {"BAR": ""}, ""),
        ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
        ("${FOO##*x}", {"FOO": "xxyy"}, "yy"),
        ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy"),
        ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
        ("${FOO%x}", {"FOO": "xxyy"}, "xxyy"),
        ("${FOO%y}", {"FOO": "xxyy"}, "xxy"),
        ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
        ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
        ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
        (
            "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
            {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
            "/foo.*/*.txt - /foo..*.txt",
        ),
        (
            "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
            {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
            "/tmp/bar.txt - /bar.txt",
        ),
        ("${FOO/a/o} ${FOO//a/o}", {"FOO": "banana"}, "bonana bonono"),
        ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt"),
        ("${FOO///}", {}, ""),
        (
            "app-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
            {"VERSION": "v1.2.3", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"},
            "app-v1.2.3.linux-arm-v7.tar.gz",
        ),
    ],
)
def test_it_applies_modifiers_trimming_and_replacement(word: str, env: dict[str, str], expected: str) -> None:
    assert ShellLex().process_word(word, env) == expected


@pytest.mark.parametrize(
    ("word", "env", "message"),
    [
        ("${VAR:?message here$ARG}", {"VAR": "", "ARG": "x"}, "VAR: message herex"),
        ("${VAR?message here$ARG}", {"ARG": "x"}, "VAR: message herex"),
        ("${VAR:?}", {"VAR": ""}, "VAR: is not allowed to be empty"),
        ("${VAR?}", {}, "VAR: is not allowed to be unset"),
        ("${FOO=aaa}", {"FOO": "x"}, "unsupported modifier (=) in substitution"),
        ("${FOO//ww}", {"FOO": "x"}, "syntax error: missing '/' in ${}"),
        ("${FOO", {}, "syntax error: missing '}'"),
        ("${}", {}, "syntax error: bad substitution"),
        ('say "hi', {}, 'unexpected end of statement while looking for matching "'),
        ("${FOO#a\\b}", {"FOO": "x"}, "invalid pattern (a\\b) in substitution: invalid escape '\\b'"),
    ],
)
def test_it_explains_what_cannot_be_expanded(word: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ShellLex().process_word(word, env)

    assert str(caught.value).endswith(f": {message}")
    assert str(caught.value).startswith("failed to process ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", ["hello"]),
        ("hello${hi}bye", ["hellohibye"]),
        ("hello${nope}bye", ["hellobye"]),
        ("hello${space}bye", ["helloabc", "defbye"]),
        ('hello"${space}"bye', ["helloabc  defbye"]),
        ('hello "${space}"bye', ["hello", "abc  defbye"]),
        ("hello${leading}def", ["hello", "ab", "cdef"]),
        ('hello"${leading}" def', ["hello  ab   c", "def"]),
        ("hello${trailing}d", ["helloab", "c", "d"]),
        ('hel"lo${trailing}"', ["helloab   c   "]),
        ('hello" there  "', ["hello there  "]),
        ("hello there     ", ["hello", "there"]),
        ("hello\\ there", ["hello there"]),
        ('hello\\" there', ['hello"', "there"]),
        ('hello"\\\\there"', ["hello\\there"]),
        ('hello"\\there"', ["hello\\there"]),
        ("hello'\\\\there'", ["hello\\\\there"]),
        ("hello'$there'", ["hello$there"]),
        ('"" a', ["a"]),
    ],
)
def test_it_splits_words_after_expansion(text: str, expected: list[str]) -> None:
    env = {"hi": "hi", "space": "abc  def", "leading": "  ab   c", "trailing": "ab   c   "}

    assert ShellLex().process_words(text, env) == expected


def test_a_backtick_escape_leaves_backslashes_alone() -> None:
    lex = ShellLex("`")

    assert lex.process_word("C:\\Windows\\`$PATH", {"PATH": "x"}) == "C:\\Windows\\$PATH"
    assert lex.process_words('"a`"b" c\\ d', {}) == ['a"b', "c\\", "d"]


def test_the_parser_options_keep_quotes_escapes_and_unset_variables() -> None:
    lex = ShellLex(raw_quotes=True, raw_escapes=True, skip_unset=True)

    assert lex.process_words("<<'EOF' $A ${B:-x} \\$C $SET", {"SET": "yes"}) == [
        "<<'EOF'",
        "$A",
        "${B:-x}",
        "\\$C",
        "yes",
    ]
