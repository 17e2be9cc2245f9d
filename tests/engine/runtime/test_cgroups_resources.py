"""Resources from OCI specs, value conversions, and the device rules in both cgroup versions' forms."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from containers.engine.errors import InvalidArgument
from containers.engine.runtime.cgroups import DeviceRule, Resources, new_manager
from containers.engine.runtime.cgroups.cpu import shares_to_weight
from containers.engine.runtime.cgroups.devices import (
    BPF_DEVCG_ACC_MKNOD,
    BPF_DEVCG_ACC_READ,
    BPF_DEVCG_ACC_WRITE,
    BPF_DEVCG_DEV_BLOCK,
    BPF_DEVCG_DEV_CHAR,
    program,
    rule_lines_v1,
)
from containers.engine.runtime.cgroups.io import weight_to_io_weight
from containers.engine.runtime.spec import DEFAULT_DEVICE_RULES

# Docker's default device rules, as the engine writes them into every config.json.
DOCKER_DEVICES = DEFAULT_DEVICE_RULES

CHAR, BLOCK = BPF_DEVCG_DEV_CHAR, BPF_DEVCG_DEV_BLOCK
READ, WRITE, MKNOD = BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE, BPF_DEVCG_ACC_MKNOD


def run_device_program(code: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """Interpret the few eBPF instructions the device program uses, as the kernel would run them."""
    regs = [0] * 11
    context = struct.pack("<III", access << 16 | dev_type, major, minor)
    insns = [struct.unpack_from("<BBhi", code, offset) for offset in range(0, len(code), 8)]
    pc = 0
    while True:
        op, registers, off, imm = insns[pc]
        dst, src = registers & 0xF, registers >> 4
        pc += 1
        if op == 0x61:
            assert src == 1, "the program should only load from its context"
            regs[dst] = struct.unpack_from("<I", context, off)[0]
        elif op == 0x54:
            regs[dst] &= imm
        elif op == 0x74:
            regs[dst] >>= imm
        elif op == 0xB4:
            regs[dst] = imm
        elif op == 0xBC:
            regs[dst] = regs[src]
        elif op == 0x55:
            pc += off if regs[dst] != imm else 0
        elif op == 0x5D:
            pc += off if regs[dst] != regs[src] else 0
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x} at {pc - 1}")


def test_it_reads_an_oci_resources_object() -> None:
    resources = Resources.from_oci(
        {
            "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 100},
            "blockIO": {"weight": 300},
            "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": -1}],
        }
    )
    assert resources == Resources(
        memory=64 << 20,
        memory_reservation=32 << 20,
        memory_swap=128 << 20,
        cpu_shares=512,
        cpu_quota=50000,
        cpu_period=100000,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        pids_limit=100,
        blkio_weight=300,
        devices=(DeviceRule(allow=False), DeviceRule(allow=True, type="c", major=1)),
    )


def test_it_reads_an_empty_resources_object_as_no_limits() -> None:
    assert Resources.from_oci({}) == Resources()


@pytest.mark.parametrize(
    "resources",
    [
        {"memory": {"limit": "64m"}},
        {"memory": {"limit": True}},
        {"cpu": []},
        {"cpu": {"cpus": 3}},
        {"devices": [{"type": "c"}]},
        {"devices": [{"allow": True, "type": "x"}]},
        {"devices": [{"allow": True, "access": "rx"}]},
    ],
)
def test_it_rejects_malformed_resources(resources: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match="^(linux.resources|device rule)"):
        Resources.from_oci(resources)


@pytest.mark.parametrize("path", ["", "/webengine/x", "webengine/../x", "..", "."])
def test_it_rejects_cgroup_paths_outside_the_root(path: str) -> None:
    with pytest.raises(InvalidArgument, match="must be relative"):
        new_manager(path)


def test_it_normalises_cgroup_paths() -> None:
    assert new_manager("webengine//x/./y/").path == "webengine/x/y"


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (262144, 10000), (0, 1), (10**6, 10000)])
def test_it_converts_shares_to_weight_like_runc(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (500, 4950), (1000, 10000)])
def test_it_converts_blkio_weight_to_io_weight_like_runc(blkio: int, io: int) -> None:
    assert weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(
    ("rule", "lines"),
    [
        (DeviceRule(allow=False), ["a"]),
        (DeviceRule(allow=True, type="c", major=1, minor=3), ["c 1:3 rwm"]),
        (DeviceRule(allow=True, type="c", access="m"), ["c *:* m"]),
        (DeviceRule(allow=True, type="c", major=136), ["c 136:* rwm"]),
        (DeviceRule(allow=False, type="a", major=8, access="w"), ["c 8:* w", "b 8:* w"]),
        (DeviceRule(allow=False, access="r"), ["c *:* r", "b *:* r"]),
    ],
)
def test_it_writes_v1_device_lines(rule: DeviceRule, lines: list[str]) -> None:
    assert rule_lines_v1(rule) == lines


@pytest.mark.parametrize(
    ("device", "allowed"),
    [
        ((CHAR, READ | WRITE, 1, 3), True),  # /dev/null
        ((CHAR, READ, 1, 9), True),  # /dev/urandom
        ((CHAR, READ | WRITE, 136, 4), True),  # /dev/pts/4
        ((CHAR, MKNOD, 8, 0), True),  # mknod of any character device
        ((BLOCK, MKNOD, 8, 0), True),
        ((BLOCK, READ, 8, 0), False),  # /dev/sda
        ((CHAR, READ, 1, 1), False),  # /dev/mem
        ((CHAR, READ | MKNOD, 4, 0), False),  # more than mknod on a device not listed
    ],
)
def test_the_device_program_enforces_dockers_default_rules(device: tuple[int, int, int, int], allowed: bool) -> None:
    code = program(Resources.from_oci({"devices": DOCKER_DEVICES}).devices)
    assert run_device_program(code, *device) == int(allowed)


def test_in_the_device_program_a_later_rule_wins() -> None:
    rules = [
        DeviceRule(allow=True, type="c", major=1, minor=3),
        DeviceRule(allow=False, type="c", major=1, access="w"),
    ]
    code = program(rules)
    assert run_device_program(code, CHAR, WRITE, 1, 3) == 0, "the deny after the allow should win"
    assert run_device_program(code, CHAR, READ, 1, 3) == 1
    assert run_device_program(code, BLOCK, READ, 8, 0) == 1, "with no deny-all rule, other devices stay allowed"


def test_the_device_program_drops_rules_before_a_match_all_rule() -> None:
    rules = [DeviceRule(allow=True, type="c", major=1, minor=3), DeviceRule(allow=False)]
    code = program(rules)
    assert len(code) == 8 * 8, "prologue (6) and the default verdict (2) only"
    assert run_device_program(code, CHAR, READ, 1, 3) == 0
