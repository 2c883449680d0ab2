"""Device check: the torch backend on CUDA makes the CPU's tables and keys, and how fast.

    python bench/cuda_check.py [--blob MODEL.blob] [FILE]     # default: the default blob, README.md

For the blob and the work (its first --tokens tokens in --lanes rows): the numpy engine's
tables on the CPU against torch's on CUDA, table for table (prefill and one-token steps),
then the whole key both ways and a CUDA decode of it; times each. Exits 1 on any
difference. Run it where a GPU is lent (nothing else depends on one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from inert import codec
from inert.default import default_blob
from inert.store import open_blob

ROOT = Path(__file__).resolve().parent.parent


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", nargs="?", type=Path, default=ROOT / "README.md")
    parser.add_argument("--blob")
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here")
    blob = open_blob(args.blob) if args.blob else default_blob()
    cpu = codec.load_model(blob, 0, backend="numpy")
    gpu = codec.load_model(blob, 0, backend="torch", device="cuda")
    print(f"blob {blob.path.name}; {torch.cuda.get_device_name()}; torch {torch.__version__}")
    work = args.file.read_bytes()
    tokens = cpu.model.vocab.tokenize(work)
    n = min(args.tokens, cpu.model.config.max_seq_len, len(tokens) // args.lanes)
    batch = tokens[: n * args.lanes].reshape(args.lanes, n)
    same = True
    for version in (1, 2):
        a, ta = timed(cpu.engine.frequencies, batch, cpu.engine.new_cache(args.lanes, n), version)
        b, tb = timed(gpu.engine.frequencies, batch, gpu.engine.new_cache(args.lanes, n), version)
        rows = int(np.sum(np.any(a != b, axis=-1)))
        same &= rows == 0
        print(
            f"codec {version} prefill {args.lanes}x{n}: cpu {ta:.2f} s, cuda {tb:.2f} s; rows differing: {rows}"
        )
    cache_a, cache_b = cpu.engine.new_cache(args.lanes, n), gpu.engine.new_cache(args.lanes, n)
    steps = {"cpu": 0.0, "cuda": 0.0}
    for t in range(n):
        a, ta = timed(cpu.engine.frequencies, batch[:, t : t + 1], cache_a, 1)
        b, tb = timed(gpu.engine.frequencies, batch[:, t : t + 1], cache_b, 1)
        steps["cpu"] += ta
        steps["cuda"] += tb
        same &= bool(np.array_equal(a, b))
    print(
        f"{n} one-token steps of {args.lanes} lanes: cpu {steps['cpu']:.2f} s, cuda {steps['cuda']:.2f} s; identical: {same}"
    )
    settings = codec.default_settings(cpu)
    (key_cpu, _), te = timed(codec.model_key, work, cpu, settings)
    (key_gpu, _), tg = timed(codec.model_key, work, gpu, settings)
    back, td = timed(codec.decode_work, key_gpu, gpu)
    keys = key_cpu == key_gpu and back == work
    print(
        f"key of {len(work):,} bytes: cpu {te:.1f} s, cuda {tg:.1f} s, cuda decode {td:.1f} s; identical keys, round trip: {keys}"
    )
    sys.exit(0 if same and keys else 1)


if __name__ == "__main__":
    main()
