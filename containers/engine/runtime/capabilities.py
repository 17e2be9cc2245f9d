"""Linux capabilities of the container process, set the way runc sets them.

A process holds five capability sets (capabilities(7)): *bounding* (the ceiling, which nothing
can raise again), *permitted*, *effective* (what the kernel checks), *inheritable* and *ambient*
(what survives execve(2) for a non-root program). The OCI spec names all five in
`process.capabilities`; Docker fills bounding, effective and permitted with
`DEFAULT_CAPABILITIES` and leaves inheritable and ambient empty.

The container's init (init.c) applies them last, right before execve(2), in this order (runc
libcontainer/init_linux.go, finalizeNamespace), from the masks `masks()` makes:

    drop from the bounding set     # while CAP_SETPCAP is surely still effective
    prctl(PR_SET_KEEPCAPS, 1)      # for a non-root user: setuid(2) would empty the permitted set
    setgroups, setresgid, setresuid
    capset(effective, permitted, inheritable), then raise the ambient set
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # if process.noNewPrivileges
    seccomp filter                 # see containers.engine.runtime.seccomp for when
    execve

Names are spelt as the OCI spec spells them (`CAP_CHOWN`); `capability_numbers()` also accepts
Docker's `--cap-add` spellings (`chown`, `Cap_Chown`, `ALL`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from containers.engine.errors import InvalidArgument, NotFound

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


LAST_CAP = _last_cap()

# What moby gives every container (oci/caps/defaults.go), in moby's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
)  # fmt: skip

ALL_CAPABILITIES: dict[str, int] = {name: number for number, name in enumerate(_NAMES) if number <= LAST_CAP}

# The sets of the OCI `process.capabilities` object.
_OCI_SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

# The /proc/<pid>/status fields (proc(5)) and the OCI name of the set each one shows.
_STATUS_FIELDS = {"CapInh": "inheritable", "CapPrm": "permitted", "CapEff": "effective", "CapBnd": "bounding",
                  "CapAmb": "ambient"}  # fmt: skip


def _mask(numbers: Iterable[int]) -> int:
    mask = 0
    for number in numbers:
        mask |= 1 << number
    return mask


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


def masks(caps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Return the five sets of an OCI `process.capabilities` object as bit masks (missing: empty).

    A name the running kernel does not know raises InvalidArgument.
    """
    return {key: _mask(capability_numbers(caps.get(key, ()))) for key in _OCI_SETS}


def canonical_name(name: str) -> str:
    """Return `name` spelt as the OCI spec spells capabilities: upper case, with the `CAP_` prefix."""
    upper = name.strip().upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"


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
