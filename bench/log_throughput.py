"""200,000 log lines through the log path: a container prints them, the monitor logs them.

    .venv/bin/python bench/log_throughput.py [--lines 200000]

webengine: `seq N` in busybox, timed from start to exit, then every line is read back from the
json-file log and checked (nothing lost, nothing reordered). The anchor is `runc run` of the
same bundle writing straight into a file, which has no log path at all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_engine, report  # noqa: E402
from bench.run_to_exit import runc_bundle  # noqa: E402
from containers.engine.shim.logfile import read_log  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    command = ["seq", str(args.lines)]
    with bench_engine() as engine:
        record = engine.containers.create({"Image": "busybox", "Cmd": command})
        started = time.perf_counter()
        engine.containers.start(record.id)
        engine.containers.wait(record.id)
        ours = time.perf_counter() - started
        lines = [r.text for r in read_log(engine.containers.log_path(record.id))]
        expected = [f"{n}\n".encode() for n in range(1, args.lines + 1)]
        lost = args.lines - len(lines)
        intact = lines == expected
        scratch = Path(tempfile.mkdtemp(prefix="webengine-bench-runc-", dir="/tmp"))
        try:
            bundle = runc_bundle(engine, scratch / "bundle", engine.config.cgroup_parent)
            config = json.loads((bundle / "config.json").read_text())
            config["process"]["args"] = command
            (bundle / "config.json").write_text(json.dumps(config))
            with open(scratch / "out", "wb") as out:
                started = time.perf_counter()
                subprocess.run(["runc", "--root", str(scratch / "state"), "run", "--bundle", str(bundle), "logs"],
                               stdout=out, stdin=subprocess.DEVNULL, check=True)  # fmt: skip
                anchor = time.perf_counter() - started
            runc_lines = (scratch / "out").read_bytes().count(b"\n")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    report(f"{args.lines} log lines", ours * 1000, "runc run > file", anchor * 1000, "ms", "no line lost")
    print(f"  webengine logged {len(lines)} lines ({lost} lost, order {'intact' if intact else 'BROKEN'}); "
          f"runc wrote {runc_lines}; {args.lines / ours:,.0f} lines/s through the log path")  # fmt: skip


if __name__ == "__main__":
    main()
