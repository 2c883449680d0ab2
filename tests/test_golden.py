"""Golden keys: keys committed under tests/golden/ must decode, and re-encode byte for byte, forever.

A failure here means a change altered the key format or its meaning: bump the format
version and keep reading the old one instead of editing these files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inert import codec, exact, pad, shares
from inert.default import shipped_blob
from inert.keyfile import parse_key
from inert.store import open_blob

GOLDEN = Path(__file__).with_name("golden")
PAD = GOLDEN / "pad-v1.pad"
PAD_KEYS = sorted(GOLDEN.glob("*.pad-v1.inert"))


MODEL = GOLDEN / "tiny-model-v1.blob"
# key format 1; codecs 1 and 3 (the model alone), 2, 4 to 6 (the work's repeats mixed in;
# 6: into calibrated tables)
MODEL_KEYS = sorted(GOLDEN.glob("*.model-v1.inert")) + sorted(
    GOLDEN.glob("*.model-codec[23456].inert")
)
CLASSICAL_KEYS = sorted(GOLDEN.glob("prose.classical-m*.inert"))
# keys made with every default blob inert has shipped (codecs 4 to 6): each must decode with
# no --blob, the blob found among the package's by the id the key names
SHIPPED_BLOB_KEYS = sorted(GOLDEN.glob("prose.default-*-codec[456].inert"))
SHIPPED_BLOBS = ("385b71b07c0e8469", "fca6def395830456", "51d995e09b52f4b2")


def test_golden_files_are_present() -> None:
    assert len(PAD_KEYS) == 3
    assert len(MODEL_KEYS) == 24
    assert len(CLASSICAL_KEYS) == 5
    assert {p.name.split("-")[1] for p in SHIPPED_BLOB_KEYS} == set(SHIPPED_BLOBS)
    assert len(SHIPPED_BLOB_KEYS) == 3 * len(SHIPPED_BLOBS)
    assert len(list(GOLDEN.glob("hello.*of3.share-v1.inert"))) == 3
    assert len(list(GOLDEN.glob("hello.*of3.seedshare-v1.inert"))) == 3


@pytest.mark.parametrize("key_path", PAD_KEYS, ids=lambda p: p.name)
def test_pad_key_decodes_and_reencodes_identically(key_path: Path) -> None:
    key = key_path.read_bytes()
    work = (GOLDEN / key_path.name.replace(".pad-v1.inert", ".work")).read_bytes()
    assert pad.decode(key, str(PAD)) == work
    header, _ = parse_key(key)
    assert pad.encode(work, str(PAD), header.param("offset")) == key


@pytest.mark.parametrize("form", ["share", "seedshare"])
def test_share_set_joins(form: str) -> None:
    parts = [p.read_bytes() for p in sorted(GOLDEN.glob(f"hello.*of3.{form}-v1.inert"))]
    assert shares.join(parts) == (GOLDEN / "hello.work").read_bytes()


@pytest.fixture(params=["kernel", "numpy"])
def products(request, monkeypatch) -> None:
    """Model keys hold on the compiled integer products and on numpy's."""
    if request.param == "numpy":
        monkeypatch.setattr(exact, "KERNELS", None)
    elif exact.KERNELS is None:
        pytest.skip("inert._kernels was not built (no C compiler at install)")


@pytest.mark.parametrize("key_path", MODEL_KEYS, ids=lambda p: p.name)
def test_model_key_decodes_and_reencodes_identically(key_path: Path, products) -> None:
    loaded = codec.load_model(open_blob(MODEL))
    key = key_path.read_bytes()
    work = (GOLDEN / (key_path.name.split(".")[0] + ".model.work")).read_bytes()
    assert codec.decode_work(key, loaded) == work
    header, _ = parse_key(key)
    settings = codec.CodecSettings(
        segment_tokens=header.param("segment_tokens"), codec=header.param("codec")
    )
    assert codec.model_key(work, loaded, settings)[0] == key


@pytest.mark.parametrize("key_path", SHIPPED_BLOB_KEYS, ids=lambda p: p.name)
def test_keys_of_every_shipped_default_blob_decode_and_reencode(key_path: Path) -> None:
    key = key_path.read_bytes()
    header, _ = parse_key(key)
    blob = shipped_blob(header.blob_id)
    assert blob is not None, f"no shipped blob {header.blob_id.hex()}"
    loaded = codec.load_model(blob)
    work = (GOLDEN / "prose.model.work").read_bytes()
    assert codec.decode_work(key, loaded) == work
    settings = codec.CodecSettings(
        segment_tokens=header.param("segment_tokens"), codec=header.param("codec"), smallest=False
    )
    assert codec.model_key(work, loaded, settings)[0] == key


@pytest.mark.parametrize("key_path", CLASSICAL_KEYS, ids=lambda p: p.name)
def test_classical_key_decodes_without_a_blob(key_path: Path) -> None:
    assert (
        codec.decode_work(key_path.read_bytes(), None) == (GOLDEN / "prose.model.work").read_bytes()
    )
