"""The same OCI bundles under our runtime and runc, driven through each one's command line.

Each bundle is busybox plus a spec from `spec.build_spec()` with Docker's defaults and seccomp
profile (see bundles.py). The tests run it as a user would, `python -m containers.engine.runtime
run` or `runc run`, and check what the process sees: its pid namespace, hostname, user, groups,
environment, capabilities, mounts, masked and read-only paths, what it may not do, its exit
status, and the cgroup limits it runs under. The probe that looks at isolation runs once per
runtime, and `test_both_runtimes_show_the_same_view` holds the two views side by side.

Known differences, accepted:

- runc brings lo up in the network namespace it creates; ours leaves it down, because the engine
  prepares the network namespace (lo up) itself and passes its path in the spec.
- On cgroup v1, runc leaves the tmpfs at /sys/fs/cgroup writable (only the cgroup mounts in it
  are read-only); ours remounts it read-only too, so the container can create nothing there.
- `exec` into a created (not yet started) container: runc allows it, ours refuses (the OCI spec
  has no exec; Docker execs only into running containers). Not tested.
- Error messages differ in their framing; both name the missing program.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from containers.engine.runtime.capabilities import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from containers.engine.runtime.cgroups.manager import cgroup_version
from containers.engine.runtime.spec import (
    SpecOpt,
    with_cwd,
    with_env,
    with_hostname,
    with_process_args,
    with_readonly_rootfs,
    with_resources,
    with_rlimits,
    with_terminal,
    with_user,
)
from tests.engine.runtime.bundles import (
    CGROUP_PARENT,
    ConsoleSocket,
    Result,
    Runtime,
    make_bundle,
    read_until_eof,
    syscall_probe,
)

pytestmark = pytest.mark.requires("root", "busybox")

RUNTIMES = [pytest.param("native", id="native"), pytest.param("runc", id="runc", marks=pytest.mark.requires("runc"))]
MiB = 1 << 20
# x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl) for the probes.
SYS_PTRACE, SYS_KEYCTL = 101, 250
PTRACE_ATTACH, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING = 16, 0, -3
EPERM, ESRCH = 1, 3
DOCKER_CAPS = set(DEFAULT_CAPABILITIES)


def _new_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="bundles-", dir=os.environ["WEBENGINE_TEST_ROOT"]))


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, state_root: Path) -> Runtime:
    return Runtime(request.param, state_root / "state")


RunBundle = Callable[..., Result]


@pytest.fixture
def run(runtime: Runtime, state_root: Path, request: pytest.FixtureRequest) -> RunBundle:
    """Return `run(args, *opts)`: build a bundle for `args` and run it in the foreground."""
    count = 0

    def run_bundle(args: list[str], *opts: SpecOpt) -> Result:
        nonlocal count
        count += 1
        container_id = f"{request.node.originalname.removeprefix('test_')[:40]}-{count}".replace("_", "-")
        bundle = make_bundle(state_root / f"bundle-{count}", container_id, with_process_args(args), *opts)
        return runtime.run(bundle, container_id)

    return run_bundle


#
# What the process sees: one probe per runtime, many checks
#

PROBE = r"""
section() { echo "== $1"; }
section self; echo $$
section comm1; cat /proc/1/comm
section ps; ps -o comm
section hostname; hostname
section id; id
section env; env | sort
section cwd; pwd
section status; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
section mounts; cat /proc/self/mountinfo
section cgroup; cat /proc/self/cgroup
section cgroup-write; d=/sys/fs/cgroup/pids; [ -d $d ] || d=/sys/fs/cgroup; mkdir $d/x 2>/dev/null; echo $?
section root; ls -A /
section dev; ls -A /dev
section net; ls /sys/class/net
section kcore; if [ -e /proc/kcore ]; then wc -c < /proc/kcore; else echo absent; fi
section interrupts; wc -c < /proc/interrupts
section firmware; ls -A /sys/firmware | wc -l
section sysrq; (echo h > /proc/sysrq-trigger) 2>/dev/null; echo $?
section proc-sys; (echo x > /proc/sys/kernel/hostname) 2>/dev/null; echo $?
section mount; mount -t tmpfs none /mnt 2>/dev/null; echo $?
section unshare; unshare -n true 2>/dev/null; echo $?; unshare -m true 2>/dev/null; echo $?
section keyctl; keyctl; echo $?
section ptrace; ptrace; echo $?
section fuse; [ -n "$FUSE" ] && mknod /tmp/fuse c $FUSE && (: < /tmp/fuse) 2>/dev/null; echo $?
"""


def _parse_sections(output: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        else:
            current.append(line)
    return sections


_views: dict[str, dict[str, list[str]]] = {}


def _probe_view(name: str) -> dict[str, list[str]]:
    """Run PROBE as root under runtime `name` (once a session) and return its output, by section."""
    if name not in _views:
        root = _new_root()
        probes = {}
        if platform.machine() == "x86_64":
            probes = {
                "keyctl": syscall_probe(SYS_KEYCTL, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1),
                # This test's own pid: a host process, which the container must not be able to reach.
                "ptrace": syscall_probe(SYS_PTRACE, PTRACE_ATTACH, os.getpid(), 0, 0),
            }
        try:
            container_id = f"probe-{name}"
            opts = (with_process_args(["sh", "-c", PROBE]), with_hostname("box"), with_env([f"FUSE={_host_fuse()}"]))
            bundle = make_bundle(root / "bundle", container_id, *opts, probes=probes)
            result = Runtime(name, root / "state").run(bundle, container_id)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        assert result.status == 0, f"{name}: the probe failed: {result.stderr}"
        _views[name] = _parse_sections(result.stdout)
    return _views[name]


def _host_fuse() -> str:
    """Return "major minor" of /dev/fuse if this host can open it (as any process may), else ""."""
    try:
        fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return ""
    device = os.fstat(fd).st_rdev
    os.close(fd)
    return f"{os.major(device)} {os.minor(device)}"


@pytest.fixture(params=RUNTIMES)
def probe(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    return _probe_view(request.param)


def _needs_probes() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the syscall probes are x86-64 programs")


def _status_field(probe: dict[str, list[str]], name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in probe["status"] if line.startswith(name + ":"))


def _caps(mask: str) -> set[str]:
    number = int(mask, 16)
    return {name for name, bit in ALL_CAPABILITIES.items() if number >> bit & 1}


def _mounts(probe: dict[str, list[str]]) -> dict[str, tuple[str, set[str]]]:
    """Return the probe's mountinfo as {mount point: (fstype, per-mount options)}, the last mount at a point winning."""
    found = {}
    for line in probe["mounts"]:
        left, right = line.split(" - ", 1)
        fields = left.split()
        found[fields[4]] = (right.split()[0], set(fields[5].split(",")))
    return found


def test_it_runs_the_command_as_pid_1(probe: dict[str, list[str]]) -> None:
    assert probe["self"] == ["1"], "the command should be pid 1 of a pid namespace of its own"
    assert probe["comm1"] == ["sh"]


def test_it_shows_only_the_containers_processes(probe: dict[str, list[str]]) -> None:
    _header, *commands = probe["ps"]
    assert sorted(commands) == ["ps", "sh"], "ps should list the shell and itself only; is /proc the container's?"


def test_it_sets_the_hostname(probe: dict[str, list[str]]) -> None:
    assert probe["hostname"] == ["box"]


def test_it_runs_as_root_with_default_environment(probe: dict[str, list[str]]) -> None:
    assert probe["id"] == ["uid=0(root) gid=0(root)"]
    assert probe["cwd"] == ["/"]
    env = dict(line.split("=", 1) for line in probe["env"])
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["HOME"] == "/root", "without HOME in the spec, HOME should come from /etc/passwd, as runc sets it"
    assert "WEBENGINE_TEST_ROOT" not in env, "the runtime's own environment must not leak into the container"


def test_it_gives_dockers_default_capabilities(probe: dict[str, list[str]]) -> None:
    for field in ("CapEff", "CapPrm", "CapBnd"):
        assert _caps(_status_field(probe, field)) == DOCKER_CAPS, f"{field} should be Docker's default set"
    assert _caps(_status_field(probe, "CapInh")) == set()
    assert _caps(_status_field(probe, "CapAmb")) == set()


def test_it_sets_no_new_privs_and_seccomp(probe: dict[str, list[str]]) -> None:
    assert _status_field(probe, "NoNewPrivs") == "1"
    assert _status_field(probe, "Seccomp") == "2", "Docker's profile should be loaded as a seccomp filter"


def test_it_mounts_dockers_filesystems(probe: dict[str, list[str]]) -> None:
    mounts = _mounts(probe)
    expected = {
        "/proc": ("proc", {"nosuid", "nodev", "noexec"}),
        "/dev": ("tmpfs", {"nosuid"}),
        "/dev/pts": ("devpts", {"nosuid", "noexec"}),
        "/dev/shm": ("tmpfs", {"nosuid", "nodev", "noexec"}),
        "/dev/mqueue": ("mqueue", {"nosuid", "nodev", "noexec"}),
        "/sys": ("sysfs", {"ro", "nosuid", "nodev", "noexec"}),
    }
    for point, (fstype, options) in expected.items():
        assert point in mounts, f"{point} should be mounted"
        assert mounts[point][0] == fstype, f"{point} should be {fstype}"
        assert options <= mounts[point][1], f"{point} should be mounted {','.join(sorted(options))}"
    # cgroup2 at /sys/fs/cgroup on a unified host; on v1, a tmpfs there with one cgroup mount a hierarchy.
    cgroups = {point: options for point, (fstype, options) in mounts.items() if fstype in ("cgroup", "cgroup2")}
    assert cgroups, "the cgroup hierarchies should be mounted at /sys/fs/cgroup"
    assert all(point.startswith("/sys/fs/cgroup") for point in cgroups)
    assert all("ro" in options for options in cgroups.values()), "the cgroup mounts should be read-only"


def test_it_gives_the_container_a_cgroup_namespace(probe: dict[str, list[str]]) -> None:
    assert probe["cgroup"], "/proc/self/cgroup should list the container's cgroups"
    assert all(line.endswith(":/") for line in probe["cgroup"]), "the container's cgroup should be its root"
    assert probe["cgroup-write"] != ["0"], "/sys/fs/cgroup should be read-only"


def test_it_shows_only_the_rootfs(probe: dict[str, list[str]]) -> None:
    assert sorted(probe["root"]) == ["bin", "dev", "etc", "home", "mnt", "proc", "root", "sys", "tmp"]


def test_it_creates_the_default_devices(probe: dict[str, list[str]]) -> None:
    expected = {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue"}
    expected |= {"fd", "stdin", "stdout", "stderr"}
    assert set(probe["dev"]) == expected


def test_it_shows_only_its_own_network_interfaces(probe: dict[str, list[str]]) -> None:
    assert probe["net"] == ["lo"], "a new network namespace has only lo"


def test_it_masks_kernel_files(probe: dict[str, list[str]]) -> None:
    assert probe["kcore"] in (["absent"], ["0"]), "/proc/kcore should read empty"
    assert probe["interrupts"] == ["0"], "/proc/interrupts should read empty"
    assert probe["firmware"] == ["0"], "/sys/firmware should be an empty directory"


def test_it_makes_kernel_files_read_only(probe: dict[str, list[str]]) -> None:
    assert probe["sysrq"] != ["0"], "writing /proc/sysrq-trigger should fail"
    assert probe["proc-sys"] != ["0"], "writing /proc/sys should fail"


def test_it_refuses_mount_and_unshare(probe: dict[str, list[str]]) -> None:
    assert probe["mount"] != ["0"], "mount should fail without CAP_SYS_ADMIN"
    assert probe["unshare"] == ["1", "1"], "unshare should fail without CAP_SYS_ADMIN"


def test_it_refuses_keyctl(probe: dict[str, list[str]]) -> None:
    _needs_probes()
    assert probe["keyctl"] == [str(EPERM)], "keyctl should be refused by the seccomp profile"


def test_it_cannot_reach_host_processes(probe: dict[str, list[str]]) -> None:
    _needs_probes()
    assert probe["ptrace"] == [str(ESRCH)], "ptrace of a host process should find no such process"


def test_it_refuses_devices_outside_the_allowlist(probe: dict[str, list[str]]) -> None:
    if not _host_fuse():
        pytest.skip("this host cannot open /dev/fuse")
    assert probe["fuse"] != ["0"], "the device cgroup should refuse /dev/fuse, which Docker does not allow"


@pytest.mark.requires("runc")
def test_both_runtimes_show_the_same_view() -> None:
    """Hold the native probe's view next to runc's; only the accepted differences may remain."""
    native, runc = _probe_view("native"), _probe_view("runc")
    native_mounts, runc_mounts = _mounts(native), _mounts(runc)
    # On v1, runc leaves the tmpfs that holds the cgroup mounts writable (see the module's docstring).
    assert native_mounts.pop("/sys/fs/cgroup")[0] == runc_mounts.pop("/sys/fs/cgroup")[0]
    assert native_mounts == runc_mounts
    for section in sorted((set(native) | set(runc)) - {"mounts"}):
        assert native.get(section) == runc.get(section), f"what the process sees in {section!r} differs"


#
# User, groups, environment, working directory
#


def test_it_runs_as_the_given_user_and_groups(run: RunBundle) -> None:
    result = run(["sh", "-c", "id; echo $HOME; pwd; grep -E '^Cap(Eff|Prm)' /proc/self/status"],
                 with_user(1000, 1000, [29, 5]), with_cwd("/home/app"))  # fmt: skip
    assert result.status == 0, result.stderr
    assert result.lines[:3] == ["uid=1000(app) gid=1000(app) groups=5,29(audio)", "/home/app", "/home/app"]
    assert result.lines[3:] == ["CapPrm:\t0000000000000000", "CapEff:\t0000000000000000"], (
        "a non-root user should hold no capabilities after setuid"
    )


def test_it_lets_a_user_reopen_its_stdio(run: RunBundle) -> None:
    result = run(["sh", "-c", "echo to-stderr >> /dev/stderr && echo ok"], with_user(1000, 1000))
    assert (result.status, result.stdout, result.stderr) == (0, "ok\n", "to-stderr\n"), (
        "the runtime should give stdio to the container's user, as runc does"
    )


def test_it_sets_env_and_creates_the_cwd(run: RunBundle) -> None:
    result = run(["sh", "-c", "echo $FOO $HOME; pwd"], with_env(["FOO=bar", "HOME=/x"]), with_cwd("/work/dir"))
    assert (result.status, result.lines) == (0, ["bar /x", "/work/dir"]), result.stderr


def test_it_takes_an_environment_larger_than_a_sockets_default_buffer(run: RunBundle) -> None:
    # Four variables of 100 kB: one string may not pass 128 kB (execve(2), "Limits on size").
    env = [f"BIG{n}={'x' * 100_000}" for n in range(4)]
    result = run(["sh", "-c", "echo $((${#BIG0} + ${#BIG1} + ${#BIG2} + ${#BIG3}))"], with_env(env))
    assert (result.status, result.lines) == (0, ["400000"]), result.stderr


def test_it_sets_rlimits(run: RunBundle) -> None:
    unlimited = 2**64 - 1  # RLIM_INFINITY, as OCI's uint64 writes it
    limits = with_rlimits([
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
        {"type": "RLIMIT_CORE", "soft": unlimited, "hard": unlimited},
    ])  # fmt: skip
    result = run(["sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -Sc"], limits)
    assert (result.status, result.lines) == (0, ["1024", "2048", "unlimited"]), result.stderr


def test_it_refuses_writes_to_a_read_only_rootfs(run: RunBundle) -> None:
    result = run(["sh", "-c", "touch /x || touch /tmp/x || echo refused; touch /dev/shm/x && echo shm-ok"],
                 with_readonly_rootfs(True))  # fmt: skip
    assert (result.status, result.lines) == (0, ["refused", "shm-ok"]), result.stderr


#
# Exit status and errors
#


def test_it_returns_the_exit_status(run: RunBundle) -> None:
    assert run(["sh", "-c", "exit 3"]).status == 3


def test_it_reports_a_missing_executable(run: RunBundle) -> None:
    result = run(["no-such-program"])
    assert result.status != 0
    assert "no-such-program" in result.stderr and "not found" in result.stderr, result.stderr
    result = run(["/bin/no-such-program"])
    assert result.status != 0
    assert "/bin/no-such-program" in result.stderr and "no such file" in result.stderr.lower(), result.stderr


def test_it_returns_128_plus_the_signal_that_killed_the_process(runtime: Runtime, state_root: Path) -> None:
    bundle = make_bundle(state_root / "bundle", "killed", with_process_args(["sleep", "30"]))
    pid_file = state_root / "run.pid"
    process, out, err = runtime.spawn("run", "--bundle", str(bundle), "--pid-file", str(pid_file), "killed")
    try:
        # runc writes --pid-file just after the process starts: wait for both.
        assert _wait_for(lambda: runtime.status("killed") == "running" and pid_file.exists()), "run should start it"
        assert pid_file.read_text().strip() == str(runtime.state("killed")["pid"]), "run should write --pid-file"
        assert runtime("kill", "killed", "KILL").status == 0
        result = runtime.result(process, out, err)
    finally:
        process.kill()
        process.wait()
        runtime.cleanup("killed")
    assert result.status == 128 + signal.SIGKILL


#
# The lifecycle: create, start, state, kill, delete
#


def test_it_goes_through_the_oci_lifecycle(runtime: Runtime, state_root: Path) -> None:
    bundle = make_bundle(state_root / "bundle", "life", with_process_args(["sleep", "30"]))
    pid_file = state_root / "pid"
    try:
        created = runtime("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "life")
        assert created.status == 0, created.stderr
        state = runtime.state("life")
        assert {"ociVersion", "id", "status", "pid", "bundle"} <= set(state)
        assert (state["id"], state["status"], state["bundle"]) == ("life", "created", str(bundle))
        assert state["pid"] > 0 and pid_file.read_text().strip() == str(state["pid"])
        assert os.path.exists(f"/proc/{state['pid']}"), "init should wait for start"

        again = runtime("create", "--bundle", str(bundle), "life")
        assert again.status != 0, "a second container with the same id should be refused"

        assert runtime("start", "life").status == 0
        assert runtime.state("life")["status"] == "running"
        with open(f"/proc/{state['pid']}/comm") as f:
            assert f.read().strip() == "sleep"
        assert runtime("start", "life").status != 0, "a running container cannot start again"

        assert runtime("kill", "life", "KILL").status == 0
        assert runtime.wait_status("life", "stopped")["status"] == "stopped"

        assert runtime("delete", "life").status == 0
        assert not (runtime.root / "life").exists()
        assert runtime("state", "life").status != 0, "a deleted container should be gone"
    finally:
        runtime.cleanup("life")
    assert not any(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/life")), "delete should remove the cgroup"


def test_it_execs_pauses_and_resumes(runtime: Runtime, state_root: Path) -> None:
    bundle = make_bundle(state_root / "bundle", "busy", with_process_args(["sleep", "30"]), with_user(1000, 1000))
    pid_file = state_root / "exec.pid"
    try:
        assert runtime("run", "--detach", "--bundle", str(bundle), "busy").status == 0
        assert runtime.status("busy") == "running"
        result = runtime("exec", "--pid-file", str(pid_file), "busy", "sh", "-c", "id; ps -o comm; exit 4")
        assert result.status == 4, f"exec should return the process's exit status: {result.stderr}"
        assert result.lines == ["uid=1000(app) gid=1000(app)", "COMMAND", "sleep", "sh", "ps"], (
            "exec should join the container's pid namespace as its user"
        )
        assert int(pid_file.read_text()) > 0
        assert runtime("exec", "busy", "no-such-program").status != 0

        assert runtime("delete", "busy").status != 0, "a running container should be deleted only with --force"
        assert runtime("pause", "busy").status == 0
        assert runtime.status("busy") == "paused"
        assert runtime("exec", "busy", "true").status != 0, "exec into a paused container should be refused"
        assert runtime("pause", "busy").status != 0
        assert runtime("resume", "busy").status == 0
        assert runtime.status("busy") == "running"
        assert runtime("resume", "busy").status != 0
    finally:
        runtime.cleanup("busy")


def test_it_fails_on_an_unknown_container(runtime: Runtime) -> None:
    for verb in ("state", "start", "kill", "delete"):
        result = runtime(verb, "no-such-container")
        assert result.status != 0, f"{verb} of an unknown container should fail"
        assert "does not exist" in result.stderr


def test_it_deletes_a_created_container_with_force(runtime: Runtime, state_root: Path) -> None:
    bundle = make_bundle(state_root / "bundle", "forced", with_process_args(["sleep", "30"]))
    try:
        assert runtime("create", "--bundle", str(bundle), "forced").status == 0
        pid = runtime.state("forced")["pid"]
        assert runtime("delete", "--force", "forced").status == 0
        assert _wait_for(lambda: not _alive(pid)), "delete --force should kill the waiting init"
    finally:
        runtime.cleanup("forced")


#
# Limits
#


def test_it_oom_kills_a_memory_hog(run: RunBundle) -> None:
    # Memory plus swap no larger than memory, where the kernel accounts swap (v1 needs swapaccount=1).
    has_swap_limit = cgroup_version() == 2 or Path("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    swap = 32 * MiB if has_swap_limit else None
    # dd's 64 MiB buffer, filled from /dev/zero, cannot fit in 32 MiB of memory (and no more with swap).
    result = run(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                 with_resources(memory=32 * MiB, memory_swap=swap))  # fmt: skip
    assert result.status == 128 + signal.SIGKILL, f"the hog should be OOM-killed: {result.stderr}"


def test_it_stops_a_fork_loop_at_the_pids_limit(run: RunBundle) -> None:
    limit = 10
    # Every `&` forks; when a fork fails, the shell gives up. `echo` is a builtin and forks nothing.
    script = (
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max;"
        "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); echo $i; done"
    )
    result = run(["sh", "-c", script], with_resources(pids_limit=limit))
    assert result.lines[0] == str(limit), "the container should see its own pids cgroup"
    started = len(result.lines) - 1
    assert started == limit - 1, f"{started} children started; the shell and {limit - 1} children fit"
    assert "can't fork" in result.stderr


def test_it_throttles_a_cpu_quota(run: RunBundle) -> None:
    # cpu.stat is in the cpu hierarchy on v1, in the container's own cgroup directory on v2.
    script = "yes > /dev/null & sleep 0.5; kill $!; cat /sys/fs/cgroup/cpu/cpu.stat || cat /sys/fs/cgroup/cpu.stat"
    result = run(["sh", "-c", script], with_resources(cpu_quota=10000, cpu_period=100000))
    stats = dict(line.split() for line in result.lines if line.strip())
    assert int(stats["nr_throttled"]) > 0, f"a 10% quota should throttle a busy loop: {stats}"


#
# Terminal
#


def test_it_gives_a_terminal_through_the_console_socket(runtime: Runtime, state_root: Path) -> None:
    bundle = make_bundle(
        state_root / "bundle", "tty", with_process_args(["sh", "-c", "tty; test -t 0 && echo is-a-tty"]),
        with_terminal(True),
    )  # fmt: skip
    console = ConsoleSocket(state_root / "console.sock")
    master = -1
    try:
        created = runtime("create", "--bundle", str(bundle), "--console-socket", str(console.path), "tty")
        assert created.status == 0, created.stderr
        _name, master = console.receive()
        assert runtime("start", "tty").status == 0
        output = read_until_eof(master).decode(errors="replace").replace("\r\n", "\n")
        assert runtime.wait_status("tty", "stopped")["status"] == "stopped"
    finally:
        if master >= 0:
            os.close(master)
        console.close()
        runtime.cleanup("tty")
    assert output.splitlines() == ["/dev/pts/0", "is-a-tty"]


def test_it_proxies_a_terminal_in_the_foreground(state_root: Path) -> None:
    """`run` of a terminal bundle copies the pty to its stdout (runc needs a terminal of its own for this)."""
    runtime = Runtime("native", state_root / "state")
    bundle = make_bundle(
        state_root / "bundle", "fg-tty", with_process_args(["sh", "-c", "sleep 1; tty; seq 2000"]), with_terminal(True)
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = runtime.run(bundle, "fg-tty")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.status == 0, result.stderr
    lines = result.stdout.replace("\r\n", "\n").splitlines()
    assert lines[0] == "/dev/pts/0"
    assert lines[1:] == [str(n) for n in range(1, 2001)], "every byte the process wrote should come through"
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert cpu < 0.9, f"the runtime used {cpu:.2f} s of CPU while the container slept 1 s: it should wait, not spin"


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
