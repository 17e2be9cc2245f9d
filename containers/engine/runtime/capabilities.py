"""Linux capabilities of the container process, set the way runc sets them.

A process holds five capability sets (capabilities(7)): *bounding* (the ceiling, which nothing
can raise again), *permitted*, *effective* (what the kernel checks), *inheritable* and *ambient*
(what survives execve(2) for a non-root program). The OCI spec names all five in
`process.capabilities`; Docker fills bounding, effective and permitted with
`DEFAULT_CAPABILITIES` and leaves inheritable and ambient empty.

The container init applies them last, right before execve(2), in this order (runc
libcontainer/init_linux.go, finalizeNamespace):

    drop_bounding_set(caps["bounding"])    # while CAP_SETPCAP is surely still effective
    keep_capabilities_across_setuid()      # prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups(...); os.setgid(...); os.setuid(...)
    apply_process_capabilities(caps)
    set_no_new_privileges()                # if process.noNewPrivileges
    seccomp_filter.load()                  # see containers.engine.runtime.seccomp for when
    os.execve(...)

Names are spelt as the OCI spec spells them (`CAP_CHOWN`); `capability_numbers()` also accepts
Docker's `--cap-add` spellings (`chown`, `Cap_Chown`, `ALL`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterable, Mapping, Sequence

from containers.engine.errors import InvalidArgument, NotFound
from containers.engine.linux.syscalls import libc_call

# <linux/capability.h>, in bit order: the name at index n is capability number n.
_NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
    "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip


def _last_cap() -> int:
    """Return the highest capability number the running kernel knows (proc(5), cap_last_cap)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


_LAST_CAP = _last_cap()

# What moby gives every container (oci/caps/defaults.go), in moby's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip

ALL_CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate(_NAMES) if number <= _LAST_CAP}

# prctl(2) options, from <linux/prctl.h>.
_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4

# capget(2): version 3 takes the 64 capability bits as two 32-bit halves.
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# The sets of the OCI `process.capabilities` object.
_OCI_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

# The /proc/<pid>/status fields (proc(5)) and the OCI name of the set each one shows.
_STATUS_FIELDS = {"CapInh": "inheritable", "CapPrm": "permitted", "CapEff": "effective", "CapBnd": "bounding",
                  "CapAmb": "ambient"}  # fmt: skip


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    """Call prctl(2); the unused arguments are passed as zero, which some options require."""
    unused = ctypes.c_ulong(0)
    return libc_call("prctl", ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), unused, unused)


def _mask(numbers: Iterable[int]) -> int:
    mask = 0
    for number in numbers:
        mask |= 1 << number
    return mask


def _capget() -> tuple[int, int, int]:
    """Return the calling thread's (effective, permitted, inheritable) masks (capget(2))."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    libc_call("capget", ctypes.byref(header), data)
    low, high = data
    return (
        low.effective | high.effective << 32,
        low.permitted | high.permitted << 32,
        low.inheritable | high.inheritable << 32,
    )


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    """Replace the calling thread's effective, permitted and inheritable sets (capset(2))."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for half in (0, 1):
        shift = 32 * half
        data[half].effective = (effective >> shift) & 0xFFFFFFFF
        data[half].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[half].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    libc_call("capset", ctypes.byref(header), data)


def capability_numbers(names: Iterable[str]) -> set[int]:
    """Return the numbers of the named capabilities.

    Names are matched as Docker's `--cap-add` matches them: in any case, with or without the
    `CAP_` prefix; `ALL` stands for every capability of the running kernel. A name the running
    kernel does not know raises InvalidArgument.
    """
    numbers: set[int] = set()
    for name in names:
        canonical = canonical_name(name)
        if canonical == "CAP_ALL":
            numbers.update(ALL_CAPABILITIES.values())
        elif canonical in ALL_CAPABILITIES:
            numbers.add(ALL_CAPABILITIES[canonical])
        else:
            raise InvalidArgument(f"unknown capability {canonical}")
    return numbers


def canonical_name(name: str) -> str:
    """Return `name` spelt as the OCI spec spells capabilities: upper case, with the `CAP_` prefix."""
    upper = name.strip().upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


def keep_capabilities_across_setuid() -> None:
    """Keep the permitted set when the caller next changes from uid 0 to another uid.

    Without PR_SET_KEEPCAPS, setuid(2) from root to a non-root uid clears the permitted and
    effective sets (capabilities(7), "Effect of user ID changes on capabilities"), and no
    capability could be given to a container whose process runs as a user. Even with it, the
    effective set is cleared: `apply_process_capabilities()` restores it afterwards. The flag
    itself is reset by execve(2), so the container's program never sees it.
    """
    _prctl(_PR_SET_KEEPCAPS, 1)


def apply_process_capabilities(caps: Mapping[str, Sequence[str]]) -> None:
    """Set the calling thread's capabilities to the OCI `process.capabilities` object `caps`.

    Missing sets are empty. This does what runc does, in runc's order: drop from the bounding set
    every capability not in `caps["bounding"]`, then capset(2) effective, permitted and
    inheritable, then replace the ambient set.

    Call it after setuid(2), right before execve(2): a change from uid 0 to another uid clears the
    effective set, so a capset made before it would be undone. For a non-root user, call
    `keep_capabilities_across_setuid()` before setuid(2), or there is no permitted set left to
    give (see the module docstring for the whole sequence).

    Raises InvalidArgument for a capability name the running kernel does not know, and OSError
    when the kernel refuses (EPERM: asking for a capability the thread does not hold).
    """
    # Every name is checked before anything changes, so that a bad one leaves the thread as it was.
    sets = {key: capability_numbers(caps.get(key, ())) for key in _OCI_SETS}

    # PR_CAPBSET_DROP needs CAP_SETPCAP in the effective set (prctl(2)), which setuid(2) with
    # PR_SET_KEEPCAPS cleared: raise the effective set back to what is still permitted.
    _, held, held_inheritable = _capget()
    _capset(held, held, held_inheritable)
    _drop_bounding_except(sets["bounding"])
    _capset(_mask(sets["effective"]), _mask(sets["permitted"]), _mask(sets["inheritable"]))
    _set_ambient(sets["ambient"])


def drop_bounding_set(bounding: Iterable[str]) -> None:
    """Drop from the bounding set every capability of the running kernel not named in `bounding`.

    runc does this once before setuid(2) as well, while the thread surely still has CAP_SETPCAP;
    `apply_process_capabilities()` does it again, which changes nothing the second time.
    """
    _drop_bounding_except(capability_numbers(bounding))


def _drop_bounding_except(keep: set[int]) -> None:
    """Drop from the bounding set every capability of the running kernel that is not in `keep`.

    The loop runs to the kernel's last capability, not to the last one this module can name, so
    that a capability newer than this table is dropped too. A capability already out of the set
    is skipped, so that a thread without CAP_SETPCAP can still apply a set it already satisfies.
    """
    for number in range(_LAST_CAP + 1):
        if number not in keep and _prctl(_PR_CAPBSET_READ, number) == 1:
            _prctl(_PR_CAPBSET_DROP, number)


def _set_ambient(numbers: set[int]) -> None:
    """Make `numbers` the ambient set (prctl(2), PR_CAP_AMBIENT).

    The kernel raises an ambient capability only if it is both permitted and inheritable, which
    is why this comes after capset(2).
    """
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    for number in sorted(numbers):
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, number)


def set_no_new_privileges() -> None:
    """Forbid the calling thread and its descendants to gain privileges through execve(2).

    After prctl(PR_SET_NO_NEW_PRIVS), set-user-ID bits and file capabilities no longer grant
    anything on execve(2), and an unprivileged thread may install a seccomp filter
    (seccomp(2), "SECCOMP_SET_MODE_FILTER"). The flag cannot be unset.
    """
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def current_capabilities(pid: int | str = "self") -> dict[str, set[str]]:
    """Return the five capability sets of process `pid`, keyed by their OCI names.

    They are read from /proc/<pid>/status (proc(5)), so another process's sets can be checked
    the way `docker top` would. A capability this module cannot name appears as its number, as
    cap_to_name(3) shows it.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as err:
        raise NotFound(f"process {pid}: not found") from err
    sets: dict[str, set[str]] = {}
    for line in lines:
        field, _, value = line.partition(":")
        if field in _STATUS_FIELDS:
            sets[_STATUS_FIELDS[field]] = _names(int(value, 16))
    return sets


def _names(mask: int) -> set[str]:
    return {_NAMES[bit] if bit < len(_NAMES) else str(bit) for bit in range(mask.bit_length()) if mask >> bit & 1}
