"""Benchmark: model keys per file — size, bits per byte, ideal, float64 reference, throughput.

    python bench/model_codec.py --blob MODEL.blob FILE_OR_DIR...
    python bench/model_codec.py --random dim=256,n_layers=4,hidden_dim=768 FILE...
    python bench/model_codec.py --blob MODEL.blob --rss 10M FILE...   # peak RSS of the CLI

Per file it prints the work size, tokens, key size (whole key file), bits per byte, the
ideal Σ -log2 p of the integer engine, the payload's overhead over that ideal, the float64
reference model's cross-entropy (what exactness costs), and encode and batched decode
throughput in tokens/s and KB/s, checking every round trip. `--random` builds a model with
seeded random weights and a tokenizer trained on the files: throughput only, since random
weights compress nothing. `--rss SIZE` encodes and decodes a work of SIZE (the files
repeated) with the `inert` command and reports each one's peak resident memory.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inert import codec
from inert.heap import keep_freed_memory
from inert.modelfile import ModelConfig, model_bytes
from inert.reference import ReferenceModel
from inert.store import open_blob
from inert.tokens import Vocabulary, train_tokenizer

INERT = str(Path(sys.executable).with_name("inert"))


def files_of(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    return out


def random_model(spec: str, files: list[Path], path: Path) -> None:
    settings = {k: int(v) for k, v in (kv.split("=") for kv in spec.split(",") if kv)}
    vocab_size = settings.pop("vocab", 4096)
    texts = [f.read_bytes().decode(errors="replace") for f in files]
    tokenizer = train_tokenizer(texts, vocab_size)
    base = dict(
        dim=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=4,
        hidden_dim=768,
        max_seq_len=512,
        bos_token_id=0,
    )
    config = ModelConfig(vocab_size=len(Vocabulary(tokenizer)), **(base | settings))
    rng = np.random.default_rng(0)
    weights = {n: rng.normal(0, 1 / np.sqrt(s[1]), s) for n, s in config.matrices().items()}
    weights |= {n: np.ones(config.dim) for n in config.gains()}
    path.write_bytes(model_bytes(config, tokenizer, weights))


# Linux carries a process's peak RSS across fork and exec, so a command started from this
# (large) process would report this process's peak as its own: a small launcher starts it
# instead and reports the command's peak alone.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.buffer.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def print_header(header: str) -> None:
    """A markdown table's header row and its rule (the first column left, the rest right)."""
    print(header)
    print("|---|" + "---:|" * (header.count("|") - 2))


def peak_rss(args: list[str]) -> tuple[float, int]:
    """Seconds and peak resident memory (bytes) of a command that must succeed."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *args], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - start
    code, rss = map(int, done.stdout.split())
    if code:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr}")
    return seconds, rss


def main() -> None:
    keep_freed_memory()  # as the inert command does
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--blob")
    parser.add_argument("--random", metavar="SPEC", help="e.g. dim=256,n_layers=4,vocab=4096")
    parser.add_argument("--segment-tokens", type=int, default=512)
    parser.add_argument("--no-reference", action="store_true", help="skip the float64 reference")
    parser.add_argument(
        "--codec", type=int, default=codec.CODEC_VERSION, help="1: the model alone; 2: + repeats"
    )
    parser.add_argument(
        "--rss", metavar="SIZE", help="also measure the CLI's peak RSS on a work of SIZE (e.g. 10M)"
    )
    args = parser.parse_args()
    files = files_of(args.paths)
    tmp = Path(tempfile.mkdtemp(prefix="inert-bench-"))
    if args.random:
        blob_path = tmp / "random.blob"
        random_model(args.random, files, blob_path)
    elif args.blob:
        blob_path = Path(args.blob)
    else:
        raise SystemExit("give --blob MODEL.blob or --random SPEC")
    loaded = codec.load_model(open_blob(blob_path))
    c = loaded.model.config
    print(
        f"model {loaded.blob.id_hex}: {c.parameter_count():,} parameters, dim {c.dim}, {c.n_layers} layers, "
        f"vocab {c.vocab_size}; segments of {args.segment_tokens} tokens; numpy {np.__version__}"
    )
    settings = codec.CodecSettings(segment_tokens=args.segment_tokens, codec=args.codec)
    # the float64 reference is the model alone: comparable with codec 1's ideal only
    reference = None if args.no_reference or args.codec != 1 else ReferenceModel(loaded.model)
    header = (
        f"{'file':<24} {'bytes':>8} {'tokens':>7} {'key':>7} {'bpb':>6} {'ideal':>8} {'over%':>6} "
        f"{'ref':>8} {'eng/ref':>7} {'enc tok/s':>9} {'enc KB/s':>8} {'dec tok/s':>9} {'dec KB/s':>8}"
    )
    print(header)
    enc_rates, dec_rates = [], []
    for f in files:
        work = f.read_bytes()
        t0 = time.perf_counter()
        key, stats = codec.encode_work(work, loaded, settings)
        t1 = time.perf_counter()
        back = codec.decode_work(key, loaded)
        t2 = time.perf_counter()
        assert back == work, f"{f}: round trip failed"
        tokens = loaded.model.vocab.tokenize(work)
        ref_bits = (
            reference.cross_entropy_bits(tokens, min(args.segment_tokens, c.max_seq_len))
            if reference
            else float("nan")
        )
        enc, dec = stats.tokens / (t1 - t0), stats.tokens / (t2 - t1)
        enc_rates.append(enc)
        dec_rates.append(dec)
        print(
            f"{f.name[:24]:<24} {len(work):>8} {stats.tokens:>7} {len(key):>7} {8 * len(key) / max(1, len(work)):>6.3f} "
            f"{stats.ideal_bits / 8:>8.0f} {100 * (8 * stats.payload_bytes / max(stats.ideal_bits, 1) - 1):>6.2f} "
            f"{ref_bits / 8:>8.0f} {stats.ideal_bits / ref_bits if reference else float('nan'):>7.4f} "
            f"{enc:>9.0f} {len(work) / 1000 / (t1 - t0):>8.1f} {dec:>9.0f} {len(work) / 1000 / (t2 - t1):>8.1f}"
        )
    print(
        f"median tokens/s: encode {statistics.median(enc_rates):.0f}, decode {statistics.median(dec_rates):.0f}, "
        f"decode/encode {statistics.median(dec_rates) / statistics.median(enc_rates):.2f}"
    )
    if args.rss:
        units = {"K": 1 << 10, "M": 1 << 20}
        size = (
            int(args.rss[:-1]) * units[args.rss[-1].upper()]
            if args.rss[-1].upper() in units
            else int(args.rss)
        )
        corpus = b"".join(f.read_bytes() for f in files)
        work_path = tmp / "big.txt"
        work_path.write_bytes((corpus * (size // len(corpus) + 1))[:size])
        env_blob = str(blob_path)
        t_enc, rss_enc = peak_rss(
            [INERT, "encode", str(work_path), "-b", env_blob, "-o", str(tmp / "big.key"), "-q"]
            + (["--codec", str(args.codec)] if args.codec != codec.CODEC_VERSION else [])
        )
        t_dec, rss_dec = peak_rss(
            [
                INERT,
                "decode",
                str(tmp / "big.key"),
                "-b",
                env_blob,
                "-o",
                str(tmp / "big.out"),
                "-q",
            ]
        )
        assert (tmp / "big.out").read_bytes() == work_path.read_bytes()
        print(
            f"{size / 2**20:.1f} MiB work: encode {t_enc:.1f} s, peak RSS {rss_enc / 2**20:.0f} MiB; "
            f"decode {t_dec:.1f} s, peak RSS {rss_dec / 2**20:.0f} MiB; key {(tmp / 'big.key').stat().st_size} bytes"
        )


if __name__ == "__main__":
    main()
