"""Benchmark: `inert scan` locally and on Ray against `inert explain` run work by work.

    python bench/scan_speed.py [FOLDER] [--blob MODEL] [--works 40] [--ray]

FOLDER's files are the corpus (default: the first 4 KB of each licence text and standard
library module this machine has, up to --works of them). Prints works/s and MB/s of
`inert scan` with a process pool (one worker per core, and one worker alone), with a local
Ray instance (--ray, its start included), and of `inert explain` run once per work, one
after the other, as a shell loop would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

INERT = Path(sys.executable).with_name("inert")


def sample_corpus(folder: Path, count: int) -> None:
    sources = sorted(Path("/usr/share/common-licenses").glob("*"))
    sources += sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    written = 0
    for path in sources:
        if written == count:
            break
        if path.is_file() and path.stat().st_size >= 2000:
            (folder / f"{written:03d}-{path.name}").write_bytes(path.read_bytes()[:4096])
            written += 1


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--blob", default="default")
    parser.add_argument("--works", type=int, default=40)
    parser.add_argument("--ray", action="store_true", help="also scan on a local Ray instance")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp) / "corpus"
        if args.folder is None:
            folder.mkdir()
            sample_corpus(folder, args.works)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in files)
        print(f"{len(files)} works, {size:,} bytes; {os.cpu_count()} cores; blob {args.blob}")
        results = {}
        scan = [str(INERT), "scan", str(folder), "-b", args.blob, "-q"]
        results["inert scan (process pool)"] = timed([*scan, "-o", f"{tmp}/local.parquet"])
        results["inert scan -j 1"] = timed([*scan, "-o", f"{tmp}/one.parquet", "-j", "1"])
        if args.ray:
            results["inert scan --ray local"] = timed(
                [*scan, "-o", f"{tmp}/ray.parquet", "--ray", "local"]
            )
        results["inert explain, work by work"] = sum(
            timed([str(INERT), "explain", str(p), "-b", args.blob, "--json", f"{tmp}/e.json", "-f"])
            for p in files
        )
        base = results["inert explain, work by work"]
        for name, seconds in results.items():
            print(
                f"{name:<30} {seconds:7.1f} s  {len(files) / seconds:6.2f} works/s  "
                f"{size / seconds / 1e6:6.3f} MB/s  {seconds / len(files):5.2f} s/work  "
                f"{base / seconds:5.2f}x explain's speed"
            )


if __name__ == "__main__":
    main()
