"""Benchmark: where encode and decode time goes, per operation of the engine and the codec.

    python bench/engine_profile.py FILE                        # the default blob
    python bench/engine_profile.py --blob gemma.blob --segment-tokens 2048 FILE

Encodes and decodes FILE once under cProfile with everything on the calling thread (the
helper threads that overlap the engine with the coder are replaced by direct calls, so the
profile sees every operation; the engine's own threads still run its parallel pieces) and
prints, per phase, the seconds spent in each kind of operation and its share.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from inert import codec
from inert.default import default_blob
from inert.heap import keep_freed_memory
from inert.store import open_blob

# operation -> the functions (file suffix, name) whose own time counts as it; first match wins
OPERATIONS = {
    "integer products (kernel or BLAS)": [
        ("", "matmul_packed"),
        ("", "linear_packed"),
        ("", "linear"),
        ("exact.py", "int_matmul"),
        ("", "matmul"),
    ],
    "logits -> frequency tables": [
        ("", "row_frequencies"),
        ("", "frequencies_q"),
        ("engine.py", "_row_frequencies_1"),
        ("engine.py", "_row_frequencies_2"),
    ],
    "attention (scores, softmax, mask)": [
        ("", "attend"),
        ("engine.py", "_attend"),
        ("engine.py", "attention"),
    ],
    "exp / activations": [
        ("exact.py", "exp"),
        ("exact.py", "silu"),
        ("exact.py", "gelu_tanh"),
        ("exact.py", "tanh"),
        ("", "glu"),
    ],
    "rms norms": [("exact.py", "rms_norm")],
    "quantize activations": [("exact.py", "quantize")],
    "rotary embeddings": [("engine.py", "rope")],
    "range coder": [("", "encode"), ("", "decode"), ("rangecoder.py", ""), ("", "mixed_find")],
    "history of repeats (codecs 2, 4, 5)": [
        ("history.py", ""),
        ("", "history_predict"),
        ("", "history_learn"),
    ],
    "waiting for engine threads": [("", "acquire")],
    "packing the matrices (once a run)": [("", "pack")],
    "tokenizer": [("tokens.py", ""), ("", "encode_batch"), ("", "from_buffer")],
}


class Now:
    """An executor that runs what it is given at once, on the caller's thread."""

    def __init__(self, *_: object) -> None:
        pass

    def submit(self, fn, *args):  # the executor protocol
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self) -> Now:
        return self

    def __exit__(self, *_: object) -> None:
        pass


def operation(path: str, name: str) -> str:
    for label, patterns in OPERATIONS.items():
        for suffix, fn in patterns:
            if path.endswith(suffix) and (not fn or fn == name):
                return label
    return "other (numpy glue, Python)"


def plain_name(name: str) -> str:
    """cProfile's "<method 'decode' of ...>" or "<built-in method inert._kernels.linear>" -> the name."""
    name = name.strip("<>")
    if name.startswith("method '"):
        return name.split("'")[1]
    if name.startswith("built-in method "):
        return name.removeprefix("built-in method ").rsplit(".", 1)[-1]
    return name


def report(title: str, profile: cProfile.Profile, seconds: float) -> None:
    totals: dict[str, float] = {}
    for (path, _, name), (_, _, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        label = operation(path, plain_name(name))
        totals[label] = totals.get(label, 0.0) + own
    print(f"\n{title}: {seconds:.2f} s")
    print("| operation | seconds | share |")
    print("|---|---:|---:|")
    for label, own in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {label} | {own:.2f} | {100 * own / max(seconds, 1e-9):.0f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--blob", help="a model blob (default: the default blob)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--segment-tokens", type=int, default=0)
    args = parser.parse_args()
    keep_freed_memory()
    loaded = codec.load_model(open_blob(args.blob) if args.blob else default_blob(), args.threads)
    settings = codec.default_settings(loaded)
    if args.segment_tokens:
        settings = replace(settings, segment_tokens=args.segment_tokens)
    work = args.file.read_bytes()
    codec.ahead = lambda items, depth=0: items  # the engine on this thread
    codec.ThreadPoolExecutor = Now  # replay, decode look-ahead: direct calls
    print(f"{args.file.name}: {len(work):,} bytes; {args.threads} threads; codec {settings.codec}")
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    key, stats = codec.model_key(work, loaded, settings)
    profile.disable()
    report(f"encode, {stats.tokens:,} tokens", profile, time.perf_counter() - start)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    back = codec.decode_work(key, loaded)
    profile.disable()
    report(f"decode, {stats.tokens:,} tokens", profile, time.perf_counter() - start)
    if back != work:
        raise SystemExit("the round trip failed")


if __name__ == "__main__":
    main()
