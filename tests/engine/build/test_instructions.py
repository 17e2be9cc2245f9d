"""Dockerfile instructions: what each one holds after parsing, and what is refused."""

from __future__ import annotations

import pytest

from containers.engine.build.instructions import (
    AddCommand,
    ArgCommand,
    CmdCommand,
    CopyCommand,
    EntrypointCommand,
    EnvCommand,
    ExposeCommand,
    HealthcheckCommand,
    Instruction,
    KeyValue,
    KeyValueOptional,
    LabelCommand,
    MaintainerCommand,
    Mount,
    OnbuildCommand,
    RunCommand,
    ShellCommand,
    StopSignalCommand,
    UserCommand,
    VolumeCommand,
    WorkdirCommand,
    parse_dockerfile,
    parse_instruction,
    parse_mount,
)
from containers.engine.build.parser import Heredoc, parse
from containers.engine.errors import DockerfileError

SECOND = 10**9


def _only(text: str) -> Instruction:
    """Return the one instruction after `FROM busybox`."""
    _, stages = parse_dockerfile("FROM busybox\n" + text)
    [instruction] = stages[0].commands
    return instruction


def test_it_splits_meta_args_from_stages() -> None:
    meta_args, stages = parse_dockerfile(
        "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG} AS Build\nRUN true\nFROM --platform=linux/amd64 scratch\n"
    )

    assert meta_args == [
        ArgCommand(location=(1, 1), original="ARG BASE=busybox", args=[KeyValueOptional("BASE", "busybox")]),
        ArgCommand(location=(2, 2), original="ARG TAG", args=[KeyValueOptional("TAG", None)]),
    ]
    assert [(s.name, s.base_name, s.platform, s.location) for s in stages] == [
        ("build", "${BASE}:${TAG}", "", (3, 3)),
        ("", "scratch", "linux/amd64", (5, 5)),
    ]
    assert [type(c) for c in stages[0].commands] == [RunCommand]
    assert stages[1].commands == []


def test_run_shell_form_keeps_the_command_as_written() -> None:
    run = _only("RUN echo $HOME   'a  b' \\\n  && true\n")

    assert run == RunCommand(
        location=(2, 3),
        original="RUN echo $HOME   'a  b'   && true",
        cmd_line=["echo $HOME   'a  b'   && true"],
        prepend_shell=True,
    )
    assert run.network == "default"


def test_run_exec_form_is_not_run_by_a_shell() -> None:
    run = _only('RUN ["echo", "$HOME"]')

    assert isinstance(run, RunCommand)
    assert (run.cmd_line, run.prepend_shell) == (["echo", "$HOME"], False)


def test_run_parses_mounts_and_network() -> None:
    run = _only(
        "RUN --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,uid=1000,mode=0700 "
        "--mount=from=build,source=/out,target=/in,rw --network=none make\n"
    )

    assert isinstance(run, RunCommand)
    assert run.mounts == [
        Mount(type="cache", target="/root/.cache", id="pip", sharing="locked", uid=1000, mode=0o700, readonly=False),
        Mount(type="bind", target="/in", source="/out", from_="build", readonly=False),
    ]
    assert run.network == "none"


def test_run_heredocs_are_kept_with_their_bodies_and_tabs_stripped_for_chomp() -> None:
    run = _only("RUN <<EOF sh && <<-'END' cat\necho $HOME\nEOF\n\t\tkeep $me\n\tEND\n")

    assert isinstance(run, RunCommand)
    assert run.cmd_line == ["<<EOF sh && <<-'END' cat"]
    assert run.heredocs == [
        Heredoc(name="EOF", content="echo $HOME\n", expand=True, chomp=False),
        Heredoc(name="END", content="keep $me\n", expand=False, chomp=True),
    ]
    assert run.location == (2, 6)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("target=/src", Mount(type="bind", target="/src", readonly=True)),
        ("type=bind,src=.,dst=/src,ro=false", Mount(type="bind", source=".", target="/src", readonly=False)),
        ("type=bind,target=/src,readwrite", Mount(type="bind", target="/src", readonly=False)),
        ("type=cache,target=/cache", Mount(type="cache", target="/cache", readonly=False, sharing="shared")),
        ("type=cache,target=/cache,ro", Mount(type="cache", target="/cache", readonly=True, sharing="shared")),
        ("TYPE=Cache,Target=/c,sharing=PRIVATE", Mount(type="cache", target="/c", readonly=False, sharing="private")),
        ("type=tmpfs,target=/tmp,size=64m", Mount(type="tmpfs", target="/tmp", readonly=False, size=64 * 2**20)),
        ("type=secret,id=aws", Mount(type="secret", id="aws", readonly=True)),
        ("type=secret,id=aws,required", Mount(type="secret", id="aws", readonly=True, required=True)),
        ("type=secret,source=token,target=/t,mode=0440", Mount(type="secret", source="token", target="/t", mode=0o440)),
        ("type=ssh", Mount(type="ssh", readonly=True)),
        ('type=bind,"target=/a,b"', Mount(type="bind", target="/a,b", readonly=True)),
        ("type=bind,target=$DIR", Mount(type="bind", target="$DIR", readonly=True)),
    ],
)
def test_mounts_get_buildkits_defaults(spec: str, expected: Mount) -> None:
    assert parse_mount(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=volume,target=/x", 'unsupported mount type "volume"'),
        ("type=cache,target=/x,sharing=open", 'unsupported sharing value "open"'),
        ("type=bind,target=/x,uid=1", 'uid not allowed for "bind" type mounts'),
        ("type=tmpfs,target=/x,gid=1", 'gid not allowed for "tmpfs" type mounts'),
        ("type=cache,target=/x,mode=9", "invalid value 9 for mode"),
        ("type=cache,target=/x,uid=root", "invalid value root for uid"),
        ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
        ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
        ("type=bind,target=/x,ro=maybe", "invalid value for ro: maybe"),
        ("type=bind,target=/x,bogus", "invalid field 'bogus' must be a key=value pair"),
        ("type=bind,targte=/x", "unexpected key 'targte' in 'targte=/x' (did you mean target?)"),
        ("type=secret", "invalid secret mount. one of source, target required"),
        ("type=secret,id=a,source=b", "both source and id can't be set"),
        ("type=secret,id=a,from=x", "secret mount should not have a from"),
        ("type=bind,target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
        ("type=bind,from=$STAGE,target=/x", "'from' doesn't support variable expansion, define alias stage instead"),
    ],
)
def test_bad_mounts_are_refused(spec: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_mount(spec)

    assert caught.value.message == message


def test_cmd_and_entrypoint_keep_shell_and_exec_forms() -> None:
    _, [stage] = parse_dockerfile('FROM busybox\nCMD ["--help"]\nENTRYPOINT /bin/app  --flag\nENTRYPOINT []\n')

    cmd, entrypoint, cleared = stage.commands

    assert isinstance(cmd, CmdCommand) and (cmd.cmd_line, cmd.prepend_shell) == (["--help"], False)
    assert isinstance(entrypoint, EntrypointCommand)
    assert (entrypoint.cmd_line, entrypoint.prepend_shell) == (["/bin/app  --flag"], True)
    assert isinstance(cleared, EntrypointCommand) and (cleared.cmd_line, cleared.prepend_shell) == ([], False)


def test_shell_takes_the_json_form() -> None:
    assert _only('SHELL ["/bin/bash", "-o", "pipefail", "-c"]') == ShellCommand(
        location=(2, 2),
        original='SHELL ["/bin/bash", "-o", "pipefail", "-c"]',
        shell=["/bin/bash", "-o", "pipefail", "-c"],
    )


def test_env_and_label_keep_quotes_and_variables_for_dispatch() -> None:
    _, [stage] = parse_dockerfile(
        'FROM busybox\nENV A=$HOME B="two words" C=\'$lit\'\nENV LEGACY value  with spaces\nLABEL "a b"=c\n'
    )
    env, legacy, label = stage.commands

    assert isinstance(env, EnvCommand) and isinstance(legacy, EnvCommand) and isinstance(label, LabelCommand)
    assert env.env == [KeyValue("A", "$HOME"), KeyValue("B", '"two words"'), KeyValue("C", "'$lit'")]
    assert legacy.env == [KeyValue("LEGACY", "value  with spaces")]
    assert label.labels == [KeyValue('"a b"', "c")]


def test_arg_declares_several_names_with_and_without_defaults() -> None:
    arg = _only('ARG A B=2 C="x y" D=')

    assert isinstance(arg, ArgCommand)
    assert arg.args == [
        KeyValueOptional("A", None),
        KeyValueOptional("B", "2"),
        KeyValueOptional("C", '"x y"'),
        KeyValueOptional("D", ""),
    ]


def test_simple_instructions_hold_their_one_argument() -> None:
    _, [stage] = parse_dockerfile(
        "FROM busybox\nWORKDIR $HOME/app\nUSER 1000:1000\nSTOPSIGNAL SIGINT\nMAINTAINER Jane <j@example.com>\n"
    )

    assert [c.original for c in stage.commands] == [
        "WORKDIR $HOME/app",
        "USER 1000:1000",
        "STOPSIGNAL SIGINT",
        "MAINTAINER Jane <j@example.com>",
    ]
    workdir, user, stopsignal, maintainer = stage.commands
    assert isinstance(workdir, WorkdirCommand) and workdir.path == "$HOME/app"
    assert isinstance(user, UserCommand) and user.user == "1000:1000"
    assert isinstance(stopsignal, StopSignalCommand) and stopsignal.signal == "SIGINT"
    assert isinstance(maintainer, MaintainerCommand) and maintainer.maintainer == "Jane <j@example.com>"


def test_expose_sorts_its_ports_as_buildkit_does() -> None:
    expose = _only("EXPOSE 8080 443/tcp 53/udp 80")

    assert isinstance(expose, ExposeCommand)
    assert expose.ports == ["443/tcp", "53/udp", "80", "8080"]


def test_volume_takes_both_forms() -> None:
    _, [stage] = parse_dockerfile('FROM busybox\nVOLUME /a /b\nVOLUME [" /c ", "/d"]\n')

    assert [c.volumes for c in stage.commands if isinstance(c, VolumeCommand)] == [["/a", "/b"], ["/c", "/d"]]


def test_copy_takes_flags_sources_and_destination() -> None:
    copy = _only("COPY --from=build --chown=app:app --chmod=0755 --link a b* /dst/")

    assert copy == CopyCommand(
        location=(2, 2),
        original="COPY --from=build --chown=app:app --chmod=0755 --link a b* /dst/",
        sources=["a", "b*"],
        dest="/dst/",
        from_="build",
        chown="app:app",
        chmod="0755",
        link=True,
    )


def test_copy_heredocs_become_files_named_after_their_delimiter() -> None:
    copy = _only('COPY src <<a.txt <<-"b.txt" /dst/\n$A\na.txt\n\t$B\n\tb.txt\n')

    assert isinstance(copy, CopyCommand)
    assert copy.sources == ["src"]
    assert copy.heredocs == [
        Heredoc(name="a.txt", content="$A\n", expand=True, chomp=False),
        Heredoc(name="b.txt", content="$B\n", expand=False, chomp=True),
    ]


def test_add_takes_its_own_flags() -> None:
    add = _only("ADD --checksum=sha256:abc --keep-git-dir --chown=1 https://example.com/x.git /src")

    assert isinstance(add, AddCommand)
    assert (add.sources, add.dest, add.checksum, add.keep_git_dir, add.chown, add.link) == (
        ["https://example.com/x.git"],
        "/src",
        "sha256:abc",
        True,
        "1",
        False,
    )


def test_healthcheck_options_become_nanoseconds() -> None:
    check = _only(
        "HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=250ms --start-interval=2s --retries=4 "
        "CMD curl -f http://localhost/ || exit 1"
    )

    assert isinstance(check, HealthcheckCommand)
    assert check.test == ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    assert (check.interval_ns, check.timeout_ns, check.start_period_ns, check.start_interval_ns, check.retries) == (
        90 * SECOND,
        SECOND * 3 // 2,
        SECOND // 4,
        2 * SECOND,
        4,
    )


def test_healthcheck_exec_form_none_and_zero_durations() -> None:
    _, [stage] = parse_dockerfile(
        'FROM busybox\nHEALTHCHECK --interval=0s CMD ["/bin/check", "-q"]\nhealthcheck none\n'
    )
    exec_form, none = stage.commands

    assert isinstance(exec_form, HealthcheckCommand) and isinstance(none, HealthcheckCommand)
    assert (exec_form.test, exec_form.interval_ns, exec_form.retries) == (["CMD", "/bin/check", "-q"], 0, 0)
    assert none.test == ["NONE"]


def test_onbuild_keeps_the_trigger_text_for_the_child_build() -> None:
    _, [stage] = parse_dockerfile("FROM busybox\nONBUILD COPY --from=build . /app\nonbuild RUN <<EOF\necho $X\nEOF\n")
    copy, run = stage.commands

    assert isinstance(copy, OnbuildCommand) and isinstance(run, OnbuildCommand)
    assert copy.expression == "COPY --from=build . /app"
    assert run.expression == "RUN <<EOF\necho $X\nEOF"


def test_a_child_build_parses_an_onbuild_trigger_back_into_an_instruction() -> None:
    [node] = parse("RUN <<EOF\necho $X\nEOF").nodes

    trigger = parse_instruction(node)

    assert isinstance(trigger, RunCommand)
    assert trigger.cmd_line == ["<<EOF"]
    assert trigger.heredocs == [Heredoc(name="EOF", content="echo $X\n")]


def test_parse_instruction_refuses_an_unknown_trigger_with_its_line() -> None:
    [node] = parse("FROM busybox\n").nodes
    node.keyword, node.original = "frm", "FRM busybox"

    with pytest.raises(DockerfileError) as caught:
        parse_instruction(node)

    assert str(caught.value) == "dockerfile parse error on line 1: unknown instruction: FRM (did you mean FROM?)"


def test_stopsignal_ignores_flags_as_buildkit_does() -> None:
    assert isinstance(_only("STOPSIGNAL --whatever=1 SIGKILL"), StopSignalCommand)


def test_healthcheck_none_ignores_flags_as_buildkit_does() -> None:
    check = _only("HEALTHCHECK --interval=5s NONE")

    assert isinstance(check, HealthcheckCommand) and check.test == ["NONE"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("LABEL", "LABEL requires at least one argument"),
        ("ARG", "ARG requires at least one argument"),
        ("ARG =x", "ARG names can not be blank"),
        ("ENV =x", "ENV names can not be blank"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
        ("USER", "USER requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        (
            "ADD onlyone",
            "ADD requires at least two arguments, but only one was provided. Destination could not be determined.",
        ),
        ("SHELL []", "SHELL requires at least one argument"),
        ("ENV --flag=1 A=1", "unknown flag: flag"),
        ("COPY --link=maybe a b", "expecting boolean value for flag link, not: maybe"),
        ("COPY --link= a b", "missing a value on flag: link"),
        ("RUN --security=insecure true", "unknown flag: security"),
        ("HEALTHCHECK --retries=x CMD true", 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("HEALTHCHECK --interval=5x CMD true", 'time: unknown unit "x" in duration "5x"'),
        ("HEALTHCHECK --interval=-5s CMD true", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK --bogus=1 CMD true", "unknown flag: bogus"),
    ],
)
def test_bad_instructions_are_refused_with_buildkits_message(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile("FROM busybox\n" + text + "\n")

    assert caught.value.message == message
    assert (caught.value.line_start, caught.value.line_end) == (2, 2)
