"""Benchmark: the engine's encode and decode throughput and peak RSS against an earlier revision.

    python bench/engine_speed.py FILE...                          # default blob, against HEAD~1
    python bench/engine_speed.py --blob gemma.blob --against 8954653 FILE...

Each file is encoded and decoded (round trip checked) by this tree's inert and by the
revision named with --against (checked out in a temporary git worktree, its kernels
compiled there, imported from its src/), each run in a fresh process whose peak RSS is its
own, alternating the two `--runs` times; the table gives medians and the ratio of this tree
to the revision. Both use the blob's default codec settings, so their keys must be
identical: the benchmark checks it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from model_codec import print_header

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter with the revision's src/ first on sys.path: only APIs that
# every revision since codec 2 has.
WORKER = r"""
import json, os, resource, sys, time
from dataclasses import replace
from pathlib import Path
try:
    from inert.heap import keep_freed_memory
except ImportError:
    from inert.cli import keep_freed_memory
from inert import codec
from inert.default import default_blob
from inert.store import open_blob

keep_freed_memory()  # as the inert command does
blob_arg, threads, segment, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
blob = open_blob(blob_arg) if blob_arg != "-" else default_blob()
loaded = codec.load_model(blob, threads)
settings = codec.default_settings(loaded)
if segment:
    settings = replace(settings, segment_tokens=segment)
work = Path(path).read_bytes()
start = time.perf_counter()
key, stats = codec.model_key(work, loaded, settings)
encode = time.perf_counter() - start
start = time.perf_counter()
back = codec.decode_work(key, loaded)
decode = time.perf_counter() - start
if back != work:
    raise SystemExit(f"{path}: round trip failed")
print(json.dumps({"encode": encode, "decode": decode, "tokens": stats.tokens,
                  "key": key.hex(), "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run(src: Path, blob: str, threads: int, segment: int, path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, "-c", WORKER, blob, str(threads), str(segment), str(path)],
        capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    if done.returncode:
        raise SystemExit(f"{src}: {path}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--blob", default="-", help="a model blob (default: the default blob)")
    parser.add_argument("--against", default="HEAD~1", help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--segment-tokens", type=int, default=0, help="default: the blob's")
    args = parser.parse_args()
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.against],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    blob = str(Path(args.blob).resolve()) if args.blob != "-" else "-"
    print(
        f"this tree against {rev}; blob {args.blob}; {args.threads} threads; median of {args.runs}"
    )
    header = "| file | KB | tokens | encode KB/s (was) | decode KB/s (was) | encode t/s (was) | decode t/s (was) | encode ratio | decode ratio | peak RSS (was) |"
    print_header(header)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), rev],
            capture_output=True, check=True,
        )  # fmt: skip
        if (old / "src" / "inert" / "_kernels.c").exists():  # its own compiled kernels
            subprocess.run(
                [sys.executable, "-c", "from setuptools import setup; setup()", "build_ext", "--inplace"],
                cwd=old, capture_output=True, check=True,
            )  # fmt: skip
        try:
            for path in args.files:
                results: dict[str, list[dict]] = {"new": [], "old": []}
                for _ in range(args.runs):  # alternating: the machine's noise falls on both
                    results["new"].append(
                        run(ROOT / "src", blob, args.threads, args.segment_tokens, path)
                    )
                    results["old"].append(
                        run(old / "src", blob, args.threads, args.segment_tokens, path)
                    )
                if results["new"][0]["key"] != results["old"][0]["key"]:
                    raise SystemExit(f"{path}: the two revisions made different keys")
                kb = path.stat().st_size / 1000

                def med(which: str, field: str, results: dict = results) -> float:
                    return statistics.median(r[field] for r in results[which])

                enc, dec = kb / med("new", "encode"), kb / med("new", "decode")
                enc_old, dec_old = kb / med("old", "encode"), kb / med("old", "decode")
                tokens = results["new"][0]["tokens"]
                per_token = [
                    tokens / med(w, f) for w in ("new", "old") for f in ("encode", "decode")
                ]
                rss, rss_old = med("new", "rss") / 2**20, med("old", "rss") / 2**20
                print(
                    f"| {path.name} | {kb:.1f} | {results['new'][0]['tokens']:,} | {enc:.1f} ({enc_old:.1f}) "
                    f"| {dec:.1f} ({dec_old:.1f}) | {per_token[0]:.1f} ({per_token[2]:.1f}) "
                    f"| {per_token[1]:.1f} ({per_token[3]:.1f}) | {enc / enc_old:.2f} | {dec / dec_old:.2f} "
                    f"| {rss:.0f} MiB ({rss_old:.0f} MiB) |",
                    flush=True,
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                capture_output=True,
            )  # fmt: skip
    print("KB/s: the work's bytes per second of model_key / decode_work (model load excluded);")
    print("RSS: peak of the process that loaded the blob, encoded and decoded")


if __name__ == "__main__":
    main()
