"""Device access control: which device nodes a container may read, write or mknod.

cgroup v1 has a devices controller with devices.allow and devices.deny files (Documentation/
admin-guide/cgroup-v1/devices.rst). cgroup v2 has no such files: a program of type
BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup decides every access ("Device controller" in
cgroup-v2.rst). This module writes that program, as runc's devicefilter.go and crun's ebpf.c do,
and loads it with bpf(2).

In both versions the rules are read in order and a later rule overrides an earlier one, so Docker's
list (deny everything, then allow /dev/null and friends) means what it says.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from containers.engine.linux.syscalls import libc_call

from .common import DeviceRule, Resources, write_open

Attach = Callable[[Path, bytes], None]
"""Attach eBPF instructions to the v2 cgroup at the path as its device program (see `attach_program`)."""


def apply_v1(path: Path, resources: Resources) -> None:
    """Write each rule to devices.allow or devices.deny, in order, a write(2) a rule.

    Each file is opened once: Docker's default rules are a dozen writes for every container.
    """
    opened: dict[Path, int] = {}
    try:
        for rule in resources.devices:
            file = path / ("devices.allow" if rule.allow else "devices.deny")
            if file not in opened:
                opened[file] = os.open(file, os.O_WRONLY | os.O_CLOEXEC)
            for line in rule_lines_v1(rule):
                write_open(opened[file], file, line)
    finally:
        for fd in opened.values():
            os.close(fd)


def rule_lines_v1(rule: DeviceRule) -> list[str]:
    """Return the devices.allow/deny lines for a rule: "a", or "c 1:3 rwm" lines with "*" for any number."""
    if rule.matches_everything:
        return ["a"]
    # The kernel reads a leading "a" as "everything" and ignores the rest of the line (devices.rst),
    # so a rule for both types with numbers or a narrower access is written once per type.
    types = ("c", "b") if rule.type == "a" else (rule.type,)
    major = "*" if rule.major is None else rule.major
    minor = "*" if rule.minor is None else rule.minor
    return [f"{kind} {major}:{minor} {rule.access}" for kind in types]


def apply_v2(path: Path, resources: Resources, attach: Attach) -> None:
    """Attach a device program that enforces the rules; with no rules, leave the cgroup's devices alone."""
    if resources.devices:
        attach(path, program(resources.devices))


# struct bpf_cgroup_dev_ctx and its constants, from <linux/bpf.h>.
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
_ACCESS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
_ALL_ACCESS = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE
_TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# Opcodes, from <linux/bpf_common.h> and <linux/bpf.h>: class | operation | source.
_LDX_MEM_W = 0x01 | 0x60 | 0x00  # dst = *(u32 *)(src + off)
_AND32_IMM = 0x04 | 0x50 | 0x00  # dst &= imm
_RSH32_IMM = 0x04 | 0x70 | 0x00  # dst >>= imm
_MOV32_IMM = 0x04 | 0xB0 | 0x00  # dst = imm
_MOV32_REG = 0x04 | 0xB0 | 0x08  # dst = src
_JNE_IMM = 0x05 | 0x50 | 0x00  # if dst != imm: pc += off
_JNE_REG = 0x05 | 0x50 | 0x08  # if dst != src: pc += off
_EXIT = 0x05 | 0x90  # return r0


class _Insn(NamedTuple):
    """One eBPF instruction; `to_next_block` marks a jump whose offset is filled in when its block is done."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0
    to_next_block: bool = False

    def encode(self) -> bytes:
        # struct bpf_insn: u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm (little-endian bit fields).
        return struct.pack("<BBhi", self.code, self.src << 4 | self.dst, self.off, self.imm)


# The program's context (r1) is struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; },
# where access_type holds the device type in its low 16 bits and the access in its high 16 bits.
_PROLOGUE = (
    _Insn(_LDX_MEM_W, dst=2, src=1, off=0),  # r2 = type
    _Insn(_AND32_IMM, dst=2, imm=0xFFFF),
    _Insn(_LDX_MEM_W, dst=3, src=1, off=0),  # r3 = access
    _Insn(_RSH32_IMM, dst=3, imm=16),
    _Insn(_LDX_MEM_W, dst=4, src=1, off=4),  # r4 = major
    _Insn(_LDX_MEM_W, dst=5, src=1, off=8),  # r5 = minor
)


def program(rules: Sequence[DeviceRule]) -> bytes:
    """Return the eBPF instructions of a device program that enforces `rules`, the last match winning.

    The program tests the rules from last to first, one block each, and returns the verdict of the
    first block that matches. A rule that matches everything (Docker's leading deny-all) becomes the
    verdict when nothing else matches, and the rules before it cannot matter. With no such rule,
    everything else is allowed, as in a new v1 devices cgroup.
    """
    default_allow = True
    remaining = list(rules)
    for index, rule in enumerate(rules):
        if rule.matches_everything:
            default_allow, remaining = rule.allow, list(rules[index + 1 :])
    insns = [*_PROLOGUE]
    for rule in reversed(remaining):
        insns += _block(rule)
    insns += [_Insn(_MOV32_IMM, dst=0, imm=int(default_allow)), _Insn(_EXIT)]
    return b"".join(insn.encode() for insn in insns)


def _block(rule: DeviceRule) -> list[_Insn]:
    """Return the tests of one rule, each jumping past the block on a mismatch, then its verdict."""
    block = []
    if rule.type != "a":
        block.append(_Insn(_JNE_IMM, dst=2, imm=_TYPES[rule.type], to_next_block=True))
    access = sum(_ACCESS[letter] for letter in set(rule.access))
    if access != _ALL_ACCESS:
        # The rule matches when the access asked for is a subset of the rule's: (r3 & access) == r3.
        block += [
            _Insn(_MOV32_REG, dst=1, src=3),
            _Insn(_AND32_IMM, dst=1, imm=access),
            _Insn(_JNE_REG, dst=1, src=3, to_next_block=True),
        ]
    if rule.major is not None:
        block.append(_Insn(_JNE_IMM, dst=4, imm=rule.major, to_next_block=True))
    if rule.minor is not None:
        block.append(_Insn(_JNE_IMM, dst=5, imm=rule.minor, to_next_block=True))
    block += [_Insn(_MOV32_IMM, dst=0, imm=int(rule.allow)), _Insn(_EXIT)]
    # A jump's offset counts from the instruction after it, so the next block is len - index - 1 away.
    return [insn._replace(off=len(block) - i - 1) if insn.to_next_block else insn for i, insn in enumerate(block)]


# bpf(2) commands and constants, from <linux/bpf.h>.
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

# glibc has no bpf() wrapper (bpf(2), "NOTES"), so it is called through syscall(2).
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_MAX_PROGRAMS = 64



def attach_program(path: Path, instructions: bytes) -> None:
    """Load `instructions` as a cgroup device program and make it the only one attached to `path`.

    The program is attached with BPF_F_ALLOW_MULTI, which lets a nested runtime attach programs to
    cgroups below (the kernel runs them all and every one must allow), and only then are the
    programs attached before it detached, so that the cgroup is never without a filter; runc does
    the same. The cgroup keeps the program loaded once our descriptor is closed.
    """
    program_fd = _load(instructions)
    try:
        cgroup_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            previous = _attached(cgroup_fd)
            _bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", cgroup_fd, program_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0))
            for program_id in previous:
                _detach(cgroup_fd, program_id)
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(program_fd)


def _load(instructions: bytes) -> int:
    """Load a BPF_PROG_TYPE_CGROUP_DEVICE program and return its descriptor."""
    code = ctypes.create_string_buffer(instructions, len(instructions))
    # The program calls no helpers, so no GPL-only helper makes the license matter.
    license_name = ctypes.create_string_buffer(b"Apache")
    attr = struct.pack(
        "<IIQQIIQII16s",
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(instructions) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license_name),
        0,  # log_level: no verifier log
        0,
        0,
        0,  # kern_version, only for kprobes
        0,
        b"webengine_dev",
    )
    return _bpf(BPF_PROG_LOAD, attr)


def _attached(cgroup_fd: int) -> list[int]:
    """Return the IDs of the device programs attached to the cgroup itself (not its parents')."""
    ids = (ctypes.c_uint32 * _MAX_PROGRAMS)()
    attr = ctypes.create_string_buffer(
        struct.pack("<IIIIQII", cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), _MAX_PROGRAMS, 0)
    )
    _bpf_call(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def _detach(cgroup_fd: int, program_id: int) -> None:
    try:
        program_fd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", program_id, 0, 0))
    except FileNotFoundError:
        return  # detached and freed by someone else meanwhile
    try:
        _bpf(BPF_PROG_DETACH, struct.pack("<IIIII", cgroup_fd, program_fd, BPF_CGROUP_DEVICE, 0, 0))
    finally:
        os.close(program_fd)


def _bpf(command: int, attr: bytes) -> int:
    return _bpf_call(command, ctypes.create_string_buffer(attr, len(attr)))


def _bpf_call(command: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """Call bpf(2), retrying on EINTR, and raise OSError on failure; the kernel may write into `attr`."""
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"bpf: unknown syscall number on {platform.machine()}")
    try:
        return libc_call("syscall", ctypes.c_long(number), ctypes.c_int(command), attr, ctypes.c_uint(len(attr)))
    except OSError as err:
        raise OSError(err.errno, f"bpf command {command}: {err.strerror}") from None
