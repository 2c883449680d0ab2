"""Benchmark: each codec's key size and speed against codec 2's, side by side in one process.

    python bench/codec_speed.py FILE...                 # codecs 2, 6 and 5, default blob
    python bench/codec_speed.py --codecs 2,5 --runs 5 big.txt

Issue 14's speed target: encoding and decoding with the default blob no slower than codec 2
by more than 10 % (`inert encode` uses codec 6 below 64 KiB and codec 5 from there). One
blob is loaded once; for each file every codec encodes and decodes it (round trip checked)
in turn, `--runs` rounds, so the machine's noise falls on all of them; the table gives
median KB/s of model_key and decode_work and their ratio to the first codec listed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from model_codec import print_header

from inert import codec
from inert.default import default_blob
from inert.heap import keep_freed_memory
from inert.store import open_blob


def timed_round_trip(work: bytes, loaded: codec.LoadedModel, settings: codec.CodecSettings):
    start = time.perf_counter()
    key, _ = codec.model_key(work, loaded, settings)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    back = codec.decode_work(key, loaded)
    decode = time.perf_counter() - start
    if back != work:
        raise SystemExit("round trip failed")
    return len(key), encode, decode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--blob", help="a model blob (default: the default blob)")
    parser.add_argument("--codecs", default="2,6,5", help="the first is the baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    codecs = [int(c) for c in args.codecs.split(",")]
    keep_freed_memory()  # as the inert command does
    loaded = codec.load_model(open_blob(args.blob) if args.blob else default_blob(), args.threads)
    print(f"blob {loaded.blob.id_hex}; {args.threads} threads; median of {args.runs}")
    print_header(
        "| file | KB | codec | key bytes | key / base | encode KB/s | decode KB/s "
        "| encode / base | decode / base |"
    )
    for path in args.files:
        work = path.read_bytes()
        kb = len(work) / 1000
        base = replace(codec.default_settings(loaded, len(work)), smallest=False)
        runs: dict[int, list[tuple[int, float, float]]] = {c: [] for c in codecs}
        for _ in range(args.runs):
            for c in codecs:
                runs[c].append(timed_round_trip(work, loaded, replace(base, codec=c)))
        figures = {
            c: (
                r[0][0],
                kb / statistics.median(e for _, e, _ in r),
                kb / statistics.median(d for _, _, d in r),
            )
            for c, r in runs.items()
        }
        key0, enc0, dec0 = figures[codecs[0]]
        for c, (key, enc, dec) in figures.items():
            print(
                f"| {path.name} | {kb:.1f} | {c} | {key:,} | {key / key0:.3f} | {enc:.1f} "
                f"| {dec:.1f} | {enc / enc0:.2f} | {dec / dec0:.2f} |",
                flush=True,
            )
    print("KB/s: the work's bytes per second of model_key / decode_work (model load excluded)")


if __name__ == "__main__":
    main()
