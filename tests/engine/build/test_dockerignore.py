""".dockerignore patterns, with the cases of moby/patternmatcher's tests (MatchesOrParentMatches)."""

from __future__ import annotations

import pytest

from containers.engine.build.dockerignore import Matcher, Pattern, read_patterns
from containers.engine.errors import InvalidArgument


def _matches(patterns: str, path: str) -> bool:
    return Matcher(read_patterns(patterns)).matches(path)


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("**", "file", True),
        ("**/", "file", True),
        ("**", "dir/file", True),
        ("**/", "dir/file/", True),
        ("**/**", "dir/file", True),
        ("dir/**", "dir/file", True),
        ("dir/**", "dir/dir2/file", True),
        ("**/dir", "dir", True),
        ("**/dir", "dir/file", True),
        ("**/dir2/*", "dir/dir2/file", True),
        ("**/dir2/*", "dir/dir2/file/", True),
        ("**/dir2/**", "dir/dir2/dir3/file", True),
        ("**file", "file", True),
        ("**file", "dir/file", True),
        ("**/file", "dir/dir/file", True),
        ("**/file*", "dir/dir/file.txt", True),
        ("**/file*txt", "dir/dir/file.txt", True),
        ("**/file*.txt*", "dir/dir/file.txt", True),
        ("**/**/*.txt", "dir/dir/file.txt", True),
        ("**/**/*.txt2", "dir/dir/file.txt", False),
        ("**/*.txt", "file.txt", True),
        ("**/**/*.txt", "file.txt", True),
        ("a**/*.txt", "a/file.txt", True),
        ("a**/*.txt", "a/dir/dir/file.txt", True),
        ("a/*.txt", "a/dir/file.txt", False),
        ("a/*.txt", "a/file.txt", True),
        ("a/*.txt**", "a/file.txt", True),
        ("a[b-d]e", "ae", False),
        ("a[b-d]e", "ace", True),
        ("a[b-d]e", "aae", False),
        ("a[^b-d]e", "aze", True),
        (".*", ".foo", True),
        (".*", "foo", False),
        ("abc.def", "abcdef", False),
        ("abc.def", "abc.def", True),
        ("abc.def", "abcZdef", False),
        ("abc?def", "abcZdef", True),
        ("abc?def", "abcdef", False),
        ("**/foo/bar", "foo/bar", True),
        ("**/foo/bar", "dir/dir2/foo/bar", True),
        ("abc/**", "abc", False),
        ("abc/**", "abc/def/ghi", True),
        ("**/.foo", ".foo", True),
        ("**/.foo", "bar.foo", False),
        ("a(b)c/def", "a(b)c/def", True),
        ("a(b)c/def", "a(b)c/xyz", False),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
        ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
        ("a\\\\", "a\\", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "ab", False),
        ("*", "abc", True),
        ("a*", "ab/c", True),
        ("a*/b", "abc/b", True),
        ("a*/b", "a/c/b", False),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
        ("a*b?c*x", "abxbbxdbxebxczzx", True),
        ("a*b?c*x", "abxbbxdbxebxczzy", False),
        ("ab[^e-g]", "abc", True),
        ("a?b", "a☺b", True),
        ("a???b", "a☺b", False),
        ("[a-ζ]*", "α", True),
        ("*[a-ζ]", "A", False),
        ("a?b", "a/b", False),
        ("a*b", "a/b", False),
        ("[\\]a]", "]", True),
        ("[\\-x]", "-", True),
        ("[x\\-]", "z", False),
        ("*x", "xxx", True),
    ],
)
def test_a_pattern_excludes_a_path_or_its_parents(pattern: str, path: str, excluded: bool) -> None:
    assert _matches(pattern, path) is excluded


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        ("**\n!util/docker/web", "util/docker/web/foo", False),
        ("**\n!util/docker/web\nutil/docker/web/foo", "util/docker/web/foo", True),
        ("**\n!dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
        ("docs\n!docs/README.md", "docs/README.md", False),
        ("docs/\n!docs/README.md", "docs/README.md", False),
        ("docs/*\n!docs/README.md", "docs/README.md", False),
        ("docs\n!docs/README.md", "docs/other.md", True),
        ("*.go\n!fileutils.go", "fileutils.go", False),
        ("!fileutils.go\n*.go", "fileutils.go", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README.md", False),
    ],
)
def test_the_last_matching_pattern_wins(patterns: str, path: str, excluded: bool) -> None:
    assert _matches(patterns, path) is excluded


def test_it_never_excludes_the_context_root() -> None:
    assert not _matches("*\n**", ".")
    assert not _matches("*\n**", "")


def test_it_reads_a_dockerignore_file() -> None:
    text = (
        "\ufefftest1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n"
        "./dist/../build/\n  spaced  \n  # not a comment: only column one counts\n"
    )

    assert read_patterns(text) == [
        Pattern("test1"),
        Pattern("test2"),
        Pattern("a/file/here"),
        Pattern("lastfile"),
        Pattern("inverted/abs/path", exclusion=True),
        Pattern("build"),
        Pattern("spaced"),
        Pattern("# not a comment: only column one counts"),
    ]


@pytest.mark.parametrize("text", ["!", "a\n! \n", "[", "a[", "[^bc", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\"])
def test_it_refuses_malformed_patterns(text: str) -> None:
    with pytest.raises(InvalidArgument):
        read_patterns(text)


def test_a_malformed_pattern_is_reported_with_its_line() -> None:
    with pytest.raises(InvalidArgument, match=r"^\.dockerignore line 2: "):
        read_patterns("ok\nbad[\n")


def test_a_directory_without_exceptions_below_it_can_be_skipped() -> None:
    matcher = Matcher(read_patterns("node_modules\n.git\n*.log\n!keep.log\ndocs\n!docs/README.md"))

    assert matcher.excludes_dir_entirely("node_modules")
    assert matcher.excludes_dir_entirely(".git/objects")
    assert not matcher.excludes_dir_entirely("docs"), "docs/README.md is re-included"
    assert not matcher.excludes_dir_entirely("src"), "src is not excluded at all"


def test_an_exception_with_a_wildcard_element_opens_every_directory_it_may_reach() -> None:
    matcher = Matcher(read_patterns("node_modules\nbuild\nbuild-cache/sub\n!*/keep"))

    assert not matcher.excludes_dir_entirely("node_modules"), "node_modules/keep is re-included by */keep"
    assert not matcher.excludes_dir_entirely("build")
    assert matcher.excludes_dir_entirely("build-cache/sub"), "*/keep cannot reach below build-cache/sub"
    assert not matcher.matches("build/keep")
    assert matcher.matches("build/other")


def test_a_wildcard_exception_keeps_every_excluded_directory_open() -> None:
    matcher = Matcher(read_patterns("vendor\n!**/LICENSE"))

    assert matcher.matches("vendor/lib/code.go")
    assert not matcher.matches("vendor/lib/LICENSE")
    assert not matcher.excludes_dir_entirely("vendor")
