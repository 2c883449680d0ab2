"""Write the golden model blob and keys (run once; the committed files are the contract).

    python tests/golden/make_model_golden.py

Refuses to overwrite: golden files change only with a new format or codec version.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from tinymodel import tiny_model_bytes  # noqa: E402

from inert import codec  # noqa: E402
from inert.store import open_blob  # noqa: E402

WORKS = {
    "empty": b"",
    "hello": b"hello, world\n",
    "mixed": "Ünïcode 😀 NUL \x00 CRLF\r\nLF\n".encode() + b"\xff\xfe invalid UTF-8 \xc3",
    "prose": (HERE / "corpus.txt").read_bytes()[:700],
}


def main() -> None:
    blob_path = HERE / "tiny-model-v1.blob"
    targets = [blob_path, *(HERE / f"{name}.model-v1.inert" for name in WORKS)]
    if any(p.exists() for p in targets):
        raise SystemExit(
            "golden files exist; they must never change (bump the codec version instead)"
        )
    blob_path.write_bytes(tiny_model_bytes(seed=1))
    loaded = codec.load_model(open_blob(blob_path))
    for name, work in WORKS.items():
        (HERE / f"{name}.model.work").write_bytes(work)
        key, _ = codec.model_key(work, loaded, codec.CodecSettings(segment_tokens=16))
        (HERE / f"{name}.model-v1.inert").write_bytes(key)


if __name__ == "__main__":
    main()
