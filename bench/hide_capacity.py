"""Benchmark: what `inert hide` carries, and how fast, with a model blob.

    python bench/hide_capacity.py [--blob MODEL] [--sizes 0,100,1000] [--prompt TEXT]

For random payloads of each size: the cover text's bytes and tokens, payload-carrying bits
per token (sealed bits over the tokens until they were all settled) and per byte of text,
hide and reveal times and tokens per second. Every cover text is revealed and checked.
"""

from __future__ import annotations

import argparse
import os
import time

from inert import codec, hide
from inert.api import open_blob


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--blob", default=None)
    parser.add_argument("--sizes", default="0,100,1000")
    parser.add_argument("--prompt", default="The history of")
    args = parser.parse_args()
    loaded = codec.load_model(open_blob(args.blob))
    prompt = args.prompt.encode()
    print(f"blob {loaded.blob.id_hex}; prompt {args.prompt!r}")
    print(
        "| payload | cover text | tokens | bits per token | bits per byte of text | hide | reveal |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in map(int, args.sizes.split(",")):
        payload = os.urandom(size)
        start = time.perf_counter()
        cover = hide.hide(payload, loaded, b"benchmark passphrase", prompt)
        hidden = time.perf_counter()
        assert hide.reveal(cover.text, loaded, b"benchmark passphrase", prompt) == payload
        revealed = time.perf_counter()
        bits = 8 * cover.sealed_bytes
        tokens = len(cover.tokens)
        print(
            f"| {size:,} B ({cover.sealed_bytes} sealed) | {len(cover.text):,} B | {tokens:,} | "
            f"{bits / cover.payload_tokens:.2f} | {bits / len(cover.text):.2f} | "
            f"{hidden - start:.1f} s ({tokens / (hidden - start):.0f} t/s) | "
            f"{revealed - hidden:.1f} s ({tokens / (revealed - hidden):.0f} t/s) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
