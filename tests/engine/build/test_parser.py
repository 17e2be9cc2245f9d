"""The Dockerfile parser: golden cases (testdata/<case>/{Dockerfile,result}) and refused files.

A `result` holds one line per instruction: its lines, then BuildKit's dump of the node
(`(keyword ["--flag"] "arg"...)`, an ONBUILD trigger nested), then `json` for a JSON form and
each heredoc as `<<NAME="body"` (`<<-` when tabs are stripped, `<<'NAME'` when the body is not
expanded). Directives come first as `directive name=value`, warnings last as `warning: ...`.

Each testdata-negative/<case> holds a Dockerfile that `parse_dockerfile` refuses and `error`,
the exact message, which names the line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from containers.engine.build.instructions import parse_dockerfile
from containers.engine.build.parser import Node, Result, parse
from containers.engine.errors import DockerfileError, InvalidArgument

HERE = Path(__file__).parent
CASES = sorted(path.name for path in (HERE / "testdata").iterdir())
NEGATIVE_CASES = sorted(path.name for path in (HERE / "testdata-negative").iterdir())


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _dump_node(node: Node) -> str:
    text = node.keyword
    if node.flags:
        text += " [" + " ".join(_quote(flag) for flag in node.flags) + "]"
    if node.trigger is not None:
        return f"{text} ({_dump_node(node.trigger)})"
    return "".join([text, *(" " + _quote(value) for value in node.value)])


def dump(result: Result) -> str:
    """Render a parse result in the golden format described above."""
    lines = [f"directive {name}={value}" for name, value in result.directives.items()]
    for node in result.nodes:
        span = str(node.start_line) if node.start_line == node.end_line else f"{node.start_line}-{node.end_line}"
        line = f"{span} ({_dump_node(node)})"
        if node.json_form:
            line += " json"
        for heredoc in node.heredocs:
            name = heredoc.name if heredoc.expand else f"'{heredoc.name}'"
            line += f" <<{'-' if heredoc.chomp else ''}{name}={_quote(heredoc.content)}"
        lines.append(line)
    lines += [f"warning: {warning}" for warning in result.warnings]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", CASES)
def test_it_parses_the_golden_dockerfiles(case: str) -> None:
    directory = HERE / "testdata" / case
    text = (directory / "Dockerfile").read_bytes().decode()

    assert dump(parse(text)) == (directory / "result").read_text()


@pytest.mark.parametrize("case", NEGATIVE_CASES)
def test_it_refuses_the_bad_dockerfiles_naming_the_line(case: str) -> None:
    directory = HERE / "testdata-negative" / case
    expected = (directory / "error").read_text().rstrip("\n")

    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile((directory / "Dockerfile").read_text())

    assert str(caught.value) == expected
    if caught.value.line_start:
        assert expected.startswith(f"dockerfile parse error on line {caught.value.line_start}: ")


def test_it_reports_the_lines_an_instruction_spans() -> None:
    result = parse("FROM busybox\n\nRUN echo a \\\n  b \\\n  c\nRUN <<EOF\nbody\nEOF\nCMD x\n")

    assert [(node.start_line, node.end_line) for node in result.nodes] == [(1, 1), (3, 5), (6, 8), (9, 9)]


def test_it_keeps_the_text_of_each_instruction_as_joined() -> None:
    node = parse("FROM a\nrun echo a \\\n   b\n").nodes[1]

    assert (node.keyword, node.original) == ("run", "run echo a    b")


def test_it_refuses_a_file_without_instructions() -> None:
    with pytest.raises(DockerfileError, match="^file with no instructions$"):
        parse("")
    with pytest.raises(DockerfileError, match="^dockerfile parse error on line 3: file with no instructions$"):
        parse("# only\n\n# comments\n")


def test_it_reads_directives_only_from_the_top() -> None:
    result = parse("FROM busybox\n# escape=`\nRUN echo a \\\n  b\n")

    assert result.directives == {}
    assert result.escape == "\\"
    assert result.nodes[1].value == ["echo a   b"]


def test_the_escape_directive_changes_line_continuation() -> None:
    result = parse("# escape=`\nFROM busybox\nRUN echo a `\n  b\nRUN echo c\\\n")

    assert result.escape == "`"
    assert [node.value for node in result.nodes[1:]] == [["echo a   b"], ["echo c\\"]]


def test_an_escaped_escape_does_not_continue_the_line() -> None:
    result = parse("FROM busybox\nRUN echo \\\\\nRUN echo next\n")

    assert [node.value for node in result.nodes[1:]] == [["echo \\\\"], ["echo next"]]


def test_a_heredoc_must_be_terminated() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse("FROM busybox\nRUN <<EOF\necho never ends\n")

    assert (caught.value.line_start, caught.value.line_end) == (2, 3)
    assert str(caught.value) == "dockerfile parse error on line 2: unterminated heredoc"


def test_a_heredoc_error_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        parse("FROM busybox\nCOPY <<EOF /x\n")


def test_a_heredoc_delimiter_with_a_quoted_part_turns_off_expansion() -> None:
    node = parse('FROM busybox\nRUN cat <<E"O"F\n$HOME\nEOF\n').nodes[1]

    assert [(h.name, h.expand, h.content) for h in node.heredocs] == [("EOF", False, "$HOME\n")]


def test_the_heredoc_terminator_of_a_chomped_body_may_be_indented_with_tabs_only() -> None:
    node = parse("FROM busybox\nRUN <<-EOF\n\tbody\n  EOF\n\tEOF\n").nodes[1]

    assert node.heredocs[0].content == "\tbody\n  EOF\n"
    assert node.end_line == 5


def test_an_unknown_instruction_names_itself_and_suggests_a_keyword() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse("FROM busybox\nRUNN echo\n")

    assert str(caught.value) == "dockerfile parse error on line 2: unknown instruction: RUNN (did you mean RUN?)"


def test_an_unknown_instruction_far_from_any_keyword_gets_no_suggestion() -> None:
    with pytest.raises(DockerfileError, match="unknown instruction: frobnicate$"):
        parse("FROM busybox\nfrobnicate now\n")


def test_a_json_array_of_non_strings_is_an_error_not_a_shell_form() -> None:
    with pytest.raises(DockerfileError) as caught:
        parse('FROM busybox\nCMD ["sleep", 10]\n')

    assert str(caught.value) == (
        "dockerfile parse error on line 2: when using JSON array syntax, arrays must be comprised of strings only"
    )


def test_flags_end_at_the_first_word_without_dashes() -> None:
    node = parse("FROM busybox\nCOPY --chown=1:1 src --not-a-flag /dst\n").nodes[1]

    assert node.flags == ["--chown=1:1"]
    assert node.value == ["src", "--not-a-flag", "/dst"]


def test_an_onbuild_trigger_keeps_its_own_flags_and_heredocs() -> None:
    node = parse("FROM busybox\nONBUILD COPY --from=build <<EOF /x\nhi\nEOF\n").nodes[1]

    assert node.trigger is not None
    assert (node.trigger.keyword, node.trigger.flags) == ("copy", ["--from=build"])
    assert node.value == ["copy", "<<EOF", "/x"]
    assert [h.content for h in node.heredocs] == ["hi\n"]
