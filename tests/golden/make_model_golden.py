"""Write the golden model blob and keys (run once; the committed files are the contract).

    python tests/golden/make_model_golden.py

Writes only what is missing (the blob, keys of a new codec version) and refuses to
overwrite: golden files change only with a new format or codec version.
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


KEYS = {1: "model-v1", 2: "model-codec2"}  # codec version -> golden key suffix


def main() -> None:
    blob_path = HERE / "tiny-model-v1.blob"
    if not blob_path.exists():
        blob_path.write_bytes(tiny_model_bytes(seed=1))
    loaded = codec.load_model(open_blob(blob_path))
    for version, suffix in KEYS.items():
        if any((HERE / f"{name}.{suffix}.inert").exists() for name in WORKS):
            continue  # golden keys of this codec exist; they must never change
        for name, work in WORKS.items():
            (HERE / f"{name}.model.work").write_bytes(work)
            settings = codec.CodecSettings(segment_tokens=16, codec=version)
            key, _ = codec.model_key(work, loaded, settings)
            (HERE / f"{name}.{suffix}.inert").write_bytes(key)


if __name__ == "__main__":
    main()
