"""Benchmark: pad split/join and encode/decode throughput against `cp` of the same file.

Every command runs as its own process, side by side in one session, repeated. Each starts
after `sync` and is timed until its output is on disk (the command, then `sync`): cp leaves
its copy in the page cache while inert fsyncs every output before renaming it into place,
so only time-to-durable compares like with like. Every command's inputs are read into the page
cache first, as cp's input is (inert writes its outputs with O_DIRECT, so a share just
written is not in the cache; reading it from disk would be timed against a cached cp). The script prints median seconds, MiB/s,
the ratio to `cp` (>= 0.5 is the target), each command's time alone (page cache), its
peak resident memory (from wait4), and checks that every round trip restores the work.

    python bench/pad_throughput.py                 # 1 GiB work in a temporary folder
    python bench/pad_throughput.py --size 256M --repeat 5 --dir /some/disk
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

INERT = str(Path(sys.executable).with_name("inert"))


def run(args: list[str], cwd: Path) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def warm(path: Path) -> None:
    """Read a file through, so the timed command finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def make_work(path: Path, size: int) -> None:
    """A compressible, non-random work: repeated English-like text with a counter."""
    block = b"".join(
        b"line %08d: the quick brown fox jumps over the lazy dog.\n" % i for i in range(20000)
    )
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            chunk = block[: min(len(block), remaining)]
            f.write(chunk)
            remaining -= len(chunk)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1G", help="work size (default 1G)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--shares", type=int, default=2)
    parser.add_argument("--dir", help="where to put the files (default: a temporary folder)")
    args = parser.parse_args()
    size = parse_size(args.size)
    work_dir = Path(tempfile.mkdtemp(prefix="inert-bench-", dir=args.dir))
    env_store = work_dir / "store"
    os.environ["INERT_STORE"] = str(env_store)
    try:
        work = work_dir / "work"
        make_work(work, size)
        n = args.shares
        share_names = [f"s.{i}of{n}.inert" for i in range(1, n + 1)]
        full_names = [f"f.{i}of{n}.inert" for i in range(1, n + 1)]
        subprocess.run(
            [INERT, "pad", "new", "bench.pad", "--size", str(size + 4096), "-q"],
            cwd=work_dir,
            check=True,
        )
        commands = {
            "cp": ["cp", "work", "copy"],
            f"split -n {n}": [INERT, "split", "work", "-n", str(n), "-o", "s", "-q"],
            "join": [INERT, "join", *share_names, "-o", "joined", "-q"],
            f"split -n {n} --full": [
                *(INERT, "split", "work", "-n", str(n), "-o", "f", "--full", "-q")
            ],
            "join (full)": [INERT, "join", *full_names, "-o", "joined-full", "-q"],
            "pad encode": [
                INERT,
                "encode",
                "work",
                "-b",
                "bench.pad",
                "-o",
                "k",
                "--offset",
                "0",
                "-q",
            ],
            "pad decode": [INERT, "decode", "k", "-b", "bench.pad", "-o", "decoded", "-q"],
        }
        inputs = {  # read into the page cache before each run, as cp's input is
            "cp": ["work"],
            f"split -n {n}": ["work"],
            "join": share_names,
            f"split -n {n} --full": ["work"],
            "join (full)": full_names,
            "pad encode": ["work", "bench.pad"],
            "pad decode": ["k", "bench.pad"],
        }
        outputs = {
            "cp": ["copy"],
            f"split -n {n}": share_names,
            "join": ["joined"],
            f"split -n {n} --full": full_names,
            "join (full)": ["joined-full"],
            "pad encode": ["k"],
            "pad decode": ["decoded"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        alone: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, int] = dict.fromkeys(commands, 0)
        for _ in range(args.repeat):
            for name, command in commands.items():
                for output in outputs[name]:  # every command writes a new file, as cp does
                    (work_dir / output).unlink(missing_ok=True)
                os.sync()  # start each command with no other command's writeback pending
                for name_in in inputs[name]:
                    warm(work_dir / name_in)
                elapsed, peak = run(command, work_dir)
                flushed, _ = run(["sync"], work_dir)
                times[name].append(elapsed + flushed)
                alone[name].append(elapsed)
                rss[name] = max(rss[name], peak)
        assert filecmp.cmp(work, work_dir / "joined", shallow=False), (
            "join did not restore the work"
        )
        assert filecmp.cmp(work, work_dir / "joined-full", shallow=False), (
            "join did not restore the work from full shares"
        )
        assert filecmp.cmp(work, work_dir / "decoded", shallow=False), (
            "decode did not restore the work"
        )

        print(
            f"work: {size / 2**20:.0f} MiB, {args.repeat} runs each, medians; numpy {np.__version__}"
        )
        print(f"{'':<20} {'--- until on disk ---':^25}   {'- command alone -':^17}")
        print(
            f"{'command':<20} {'seconds':>8} {'MiB/s':>8} {'vs cp':>7}   {'seconds':>8} {'vs cp':>7}  peak RSS"
        )
        base, base_alone = statistics.median(times["cp"]), statistics.median(alone["cp"])
        for name in commands:
            t, a = statistics.median(times[name]), statistics.median(alone[name])
            print(
                f"{name:<20} {t:8.2f} {size / 2**20 / t:8.0f} {base / t:7.2f}"
                f"   {a:8.2f} {base_alone / a:7.2f}  {rss[name] / 2**20:.1f} MiB"
            )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
