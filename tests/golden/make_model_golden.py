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


KEYS = {  # codec -> suffix
    1: "model-v1",
    2: "model-codec2",
    3: "model-codec3",
    4: "model-codec4",
    5: "model-codec5",
    6: "model-codec6",
}


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


def classical_keys() -> None:
    """One key of kind 6 per classical method, of the prose work (decoded, never re-encoded:
    the compressors' own output may change between their versions)."""
    import zlib

    from inert.classical import METHODS
    from inert.keyfile import KeyHeader, Kind

    work = WORKS["prose"]
    for method, (_, compress, _) in METHODS.items():
        path = HERE / f"prose.classical-m{method}.inert"
        if not path.exists():
            header = KeyHeader(Kind.CLASSICAL, bytes(8), len(work), (method,), zlib.crc32(work))
            path.write_bytes(header.to_bytes() + compress(work))


if __name__ == "__main__":
    classical_keys()
    main()
