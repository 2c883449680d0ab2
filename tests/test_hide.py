"""inert hide / reveal: a payload sealed under a passphrase, carried by model text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inert import codec, hide
from inert.errors import InertError
from inert.store import open_blob

GOLDEN = Path(__file__).with_name("golden")
PASSPHRASE = b"correct horse battery staple"


def seeded(seed: int):
    """A reproducible stand-in for os.urandom (a test's salt and the text's tail)."""
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


@pytest.mark.parametrize("size", [0, 1, 1000, 10_000])
def test_payloads_round_trip(tiny, size: int) -> None:
    payload = np.random.default_rng(size).bytes(size)
    cover = hide.hide(payload, tiny, PASSPHRASE, b"Once upon a time")
    assert cover.text.decode("utf-8")  # valid UTF-8 text
    assert (
        cover.text.endswith(hide.ENDINGS)
        or len(cover.tokens) - cover.payload_tokens == hide.EXTRA_TOKENS
    )
    assert hide.reveal(cover.text, tiny, PASSPHRASE, b"Once upon a time") == payload
    if size <= 1000:  # the text reads back as the very tokens it was made of
        assert hide.read_tokens(cover.text, tiny, PASSPHRASE, b"Once upon a time") == cover.tokens


def test_a_cover_text_is_the_same_on_any_thread_count(tiny_blob: Path) -> None:
    texts = set()
    for threads in (1, 2, 3):
        loaded = codec.load_model(open_blob(tiny_blob), threads)
        texts.add(hide.hide(b"the same payload", loaded, PASSPHRASE, random_bytes=seeded(1)).text)
    assert len(texts) == 1


def test_the_golden_cover_text_reveals_and_is_made_again() -> None:
    loaded = codec.load_model(open_blob(GOLDEN / "tiny-model-v1.blob"))
    golden = (GOLDEN / "hello.cover-v1.txt").read_bytes()
    work = (GOLDEN / "hello.work").read_bytes()
    assert hide.reveal(golden, loaded, b"golden") == work
    assert hide.hide(work, loaded, b"golden", random_bytes=seeded(2024)).text == golden


def test_wrong_passphrase_prompt_or_blob_and_changed_or_cut_text_fail_cleanly(
    tiny, tiny_blob: Path
) -> None:
    made = hide.hide(b"meet at noon", tiny, PASSPHRASE, b"Dear Anna,", random_bytes=seeded(7))
    cover = made.text
    # the bytes that carry the sealed payload; what follows is only the text's tail
    carrying = len(tiny.model.vocab.detokenize(made.tokens[: made.payload_tokens]))
    swap = next(i for i in range(carrying // 2, carrying - 1) if cover[i] != cover[i + 1])
    swapped = cover[:swap] + cover[swap + 1 : swap + 2] + cover[swap : swap + 1] + cover[swap + 2 :]
    wrongs = [
        (cover, PASSPHRASE + b"!", b"Dear Anna,"),
        (cover, PASSPHRASE, b"Dear Bob,"),
        (cover[: carrying // 2], PASSPHRASE, b"Dear Anna,"),
        (cover[: carrying - 1], PASSPHRASE, b"Dear Anna,"),
        (swapped, PASSPHRASE, b"Dear Anna,"),
    ]
    for text, passphrase, prompt in wrongs:
        with pytest.raises(InertError, match="wrong passphrase"):
            hide.reveal(text, tiny, passphrase, prompt)
    # a text cut only in its tail still carries the whole payload
    assert hide.reveal(cover[:carrying], tiny, PASSPHRASE, b"Dear Anna,") == b"meet at noon"
    other = codec.load_model(open_blob(GOLDEN / "tiny-model-v1.blob"))
    if other.blob.id != tiny.blob.id:
        with pytest.raises(InertError, match="wrong passphrase"):
            hide.reveal(cover, other, PASSPHRASE, b"Dear Anna,")


def test_a_changed_sealed_byte_does_not_open() -> None:
    sealed = bytearray(hide.seal(b"payload", PASSPHRASE, bytes(16)))
    total, key = hide.sealed_length(bytes(sealed[:20]), PASSPHRASE)
    assert total == len(sealed) and hide.unseal(bytes(sealed), key) == b"payload"
    sealed[-1] ^= 1
    with pytest.raises(InertError, match="does not open"):
        hide.unseal(bytes(sealed), key)


def test_the_bits_the_decoder_reads_are_uniform() -> None:
    """What hide decodes into text: salt, length, ciphertext and tag, of an all-zero
    payload, must look like fair coin flips (monobit and byte chi-square, far from the
    rejection thresholds of a fair source)."""
    sealed = np.frombuffer(hide.seal(bytes(1 << 20), PASSPHRASE, bytes(range(16))), np.uint8)
    ones = np.unpackbits(sealed).mean()
    assert abs(ones - 0.5) < 5 * 0.5 / np.sqrt(8 * len(sealed))  # 5 sigma
    counts = np.bincount(sealed, minlength=256)
    expected = len(sealed) / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert 150 < chi2 < 380  # 255 degrees of freedom: p ~ 1e-6 at either end
    other = hide.seal(bytes(1 << 20), PASSPHRASE, bytes(range(1, 17)))
    assert np.mean(np.frombuffer(other, np.uint8)[16:] == sealed[16:]) < 0.01  # a fresh key


def test_the_command_asks_for_a_passphrase_file_without_a_terminal(
    inert, tmp_path: Path, tiny_blob: Path
) -> None:
    (tmp_path / "secret").write_bytes(b"launch codes")
    (tmp_path / "pass").write_bytes(b"hunter2\n")
    result = inert("hide", "secret", "-b", tiny_blob, "-o", "cover.txt")
    assert result.returncode == 1 and "--passphrase-file" in result.stderr.decode()
    assert not (tmp_path / "cover.txt").exists()
    args = ("-b", tiny_blob, "--passphrase-file", "pass", "-p", "Notes:")
    assert inert("hide", "secret", *args, "-o", "cover.txt").returncode == 0
    assert inert("reveal", "cover.txt", *args, "-o", "back").returncode == 0
    assert (tmp_path / "back").read_bytes() == b"launch codes"
    (tmp_path / "wrong").write_bytes(b"hunter3\n")
    result = inert(
        "reveal",
        "cover.txt",
        "-b",
        tiny_blob,
        "--passphrase-file",
        "wrong",
        "-p",
        "Notes:",
        "-o",
        "x",
    )
    assert result.returncode == 1 and "wrong passphrase" in result.stderr.decode()
    assert not (tmp_path / "x").exists() and "Traceback" not in result.stderr.decode()


def test_the_candidates_are_the_most_frequent_with_ties_to_the_lower_id() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        values = rng.integers(-1, 5, size=int(rng.integers(1, 300)))
        k = int(rng.integers(1, 80))
        assert (hide._most_frequent(values, k) == np.argsort(-values, kind="stable")[:k]).all()


def test_the_default_blob_hides_and_reveals() -> None:
    from inert.api import open_blob as open_any

    loaded = codec.load_model(open_any(None))
    for payload in (b"", b"x", bytes(range(256))):
        cover = hide.hide(payload, loaded, PASSPHRASE, b"The history of")
        assert hide.reveal(cover.text, loaded, PASSPHRASE, b"The history of") == payload
