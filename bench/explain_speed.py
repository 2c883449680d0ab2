"""Benchmark: `inert explain` with all its outputs against `inert encode` on the same work.

issue 6 asks for explain "at encode speed" on a 100 KB text with the default blob, writing
all four outputs (terminal, JSON, HTML, PNG). Each command runs as its own process, the
commands interleaved round by round in one session (the machine's noise hits them alike);
the script prints each command's median wall time and CPU time (user + system, all its
processes; steadier than wall time on a shared machine), their ratios to encode's, its peak RSS, and
checks that the JSON's key bits equal the key's payload bits.

    python bench/explain_speed.py WORK                 # e.g. 100 KB of Python docs
    python bench/explain_speed.py WORK --repeat 9 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INERT = str(Path(sys.executable).with_name("inert"))


def run(args: list[str]) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, CPU seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("work")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="-T for every command (0: all)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="inert-explain-bench-"))
    threads = ["-T", str(args.threads)] if args.threads else []
    outputs = ["--json", str(out / "e.json"), "--html", str(out / "e.html")]
    outputs += ["--plot", str(out / "e.png"), "--force"]
    commands = {
        "encode": [INERT, "encode", args.work, "-o", str(out / "k.inert"), "--force", "-q"],
        "explain (summary only)": [INERT, "explain", args.work],
        "explain, 4 outputs, -r pad": [INERT, "explain", args.work, *outputs],
        "explain, 4 outputs, -r classical": [
            *(INERT, "explain", args.work, "-r", "classical"),
            *outputs,
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    rss = dict.fromkeys(commands, 0)
    for _ in range(args.repeat):
        for name, command in commands.items():
            elapsed, cpu, peak = run([*command, *threads])
            times[name].append(elapsed)
            cpus[name].append(cpu)
            rss[name] = max(rss[name], peak)

    payload_bits = 8 * (len((out / "k.inert").read_bytes()) - header_length(out / "k.inert"))
    key_bits = json.loads((out / "e.json").read_text())["totals"]["key_bits"]
    size = os.path.getsize(args.work)
    print(f"work: {args.work}, {size:,} bytes; {args.repeat} runs each, interleaved; medians")
    print(
        f"{'command':<34} {'seconds':>8} {'KB/s':>7} {'vs encode':>9}  {'range':>13}"
        f"  {'CPU s':>6} {'vs encode':>9}  peak RSS"
    )
    base, base_cpu = statistics.median(times["encode"]), statistics.median(cpus["encode"])
    for name, runs in times.items():
        t, cpu = statistics.median(runs), statistics.median(cpus[name])
        print(
            f"{name:<34} {t:8.2f} {size / 1000 / t:7.1f} {t / base:8.2f}x"
            f"  {min(runs):5.2f}-{max(runs):5.2f}  {cpu:6.2f} {cpu / base_cpu:8.2f}x"
            f"  {rss[name] / 2**20:.0f} MiB"
        )
    print(f"key payload {payload_bits:,} bits; the JSON's key bits {key_bits:,.1f}")
    for f in out.iterdir():
        f.unlink()
    out.rmdir()


def header_length(key: Path) -> int:
    from inert.keyfile import read_header

    with open(key, "rb") as f:
        read_header(f)
        return f.tell()


if __name__ == "__main__":
    main()
