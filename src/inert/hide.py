"""A payload + passphrase -> ordinary-looking model text, and back (inert hide / reveal).

Encrypted bits are uniformly random, and decoding uniformly random bits under a model is
sampling from it: `hide` seals the payload (scrypt, ChaCha20-Poly1305) and *decodes* the
sealed bytes with inert's range coder under the blob's tables, as `imagine` decodes random
bits; `reveal` parses the text back into the same tokens, *encodes* them, and opens what it
gets. docs/FORMAT.md ("Cover texts") specifies every step.

Text, not tokens, travels, and a tokenizer need not give back the tokens a generator chose
("the" + "re" may come back as "there"). So reveal does not tokenize: at each step the
candidates are the model's TOP_K most likely tokens whose bytes are whole UTF-8, less every
token one of whose bytes is a prefix of a more likely candidate's or the other way round
(the more likely of the two stays). No candidate of a step is a prefix of another, so
exactly one of them begins the rest of the text: the reader finds each token from the text
and the same tables. The cost, measured: the candidates drop some mass (renormalised among
the rest), and a text's bits are those of this narrower choice.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from . import rangecoder
from .codec import LoadedModel
from .errors import InertError

SALT_BYTES = 16  # random, first in the sealed bytes: a fresh key for every cover text
LENGTH_BYTES = 4  # the payload's length, ChaCha20-encrypted (payloads below 4 GiB)
TAG_BYTES = 16  # Poly1305's
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1  # 32 MiB and ~0.1 s per key derivation
# candidates per step: the default blob's text carried 2.7 bits per token with 64, 4.1 with
# 1,024 (and keeps closer to the model's own distribution)
TOP_K = 1024
ENDINGS = (b".", b"!", b"?", b"\n")  # a cover text ends after one, once the payload is in it
EXTRA_TOKENS = 200  # at most this many tokens after the payload, looking for an ending
MAX_TOKENS_PER_BYTE = 64  # a model whose text carries under 1/8 bit per token cannot hide
TABLE_CODEC = 3  # the engine's tables at 2^31, as codec 3 codes them

CoverError = InertError
WRONG = "wrong passphrase, wrong blob or prompt, or the text was changed"


# ---------------------------------------------------------------------------- sealing


def _derive(passphrase: bytes, salt: bytes, length: int) -> bytes:
    kdf = Scrypt(salt=salt, length=length, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase)


def _chacha(key: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(data)


def seal(payload: bytes, passphrase: bytes, salt: bytes) -> bytes:
    """salt ‖ ChaCha20(length) ‖ ChaCha20-Poly1305(payload), every byte uniformly random to
    whoever lacks the passphrase (the length and the salt authenticated with the payload)."""
    if len(payload) >= 1 << (8 * LENGTH_BYTES):
        raise InertError("a payload must be smaller than 4 GiB")
    keys = _derive(passphrase, salt, 64)
    length = _chacha(keys[:32], len(payload).to_bytes(LENGTH_BYTES, "little"))
    box = ChaCha20Poly1305(keys[32:]).encrypt(bytes(12), payload, salt + length)
    return salt + length + box


def sealed_length(head: bytes, passphrase: bytes) -> tuple[int, bytes]:
    """The whole sealed length from its first SALT + LENGTH bytes, and the AEAD key."""
    salt, length = head[:SALT_BYTES], head[SALT_BYTES : SALT_BYTES + LENGTH_BYTES]
    keys = _derive(passphrase, salt, 64)
    n = int.from_bytes(_chacha(keys[:32], length), "little")
    return SALT_BYTES + LENGTH_BYTES + n + TAG_BYTES, keys[32:]


def unseal(sealed: bytes, key: bytes) -> bytes:
    head = SALT_BYTES + LENGTH_BYTES
    try:
        return ChaCha20Poly1305(key).decrypt(bytes(12), sealed[head:], sealed[:head])
    except InvalidTag:
        raise CoverError(f"the hidden work does not open: {WRONG}") from None


# ---------------------------------------------------------------------------- steps


class Steps:
    """The model's table after each token of a cover text: BOS, the prompt, then the text;
    when the context fills the model's window, it starts again from BOS and its last half."""

    def __init__(self, loaded: LoadedModel, prompt: bytes) -> None:
        self.engine = loaded.engine
        self.window = loaded.model.config.max_seq_len
        self.bos = loaded.model.config.bos_token_id
        prompt_tokens = loaded.model.vocab.tokenize(prompt).tolist()
        self.context = [self.bos, *prompt_tokens][-self.window :]
        self._restart()

    def _restart(self) -> None:
        self.cache = self.engine.new_cache(1, self.window)
        q, scale = self.engine.final_states(np.array([self.context]), self.cache)
        self.table = self.engine.tables(q[-1:], scale[-1:], TABLE_CODEC)[0]  # (V,) int64

    def advance(self, token: int) -> None:
        self.context.append(token)
        if self.cache.length == self.window:
            self.context = [self.bos, *self.context[-(self.window // 2) :]]
            self._restart()
        else:
            step = self.engine.frequencies(np.array([[token]]), self.cache, TABLE_CODEC)
            self.table = step[0, 0]


def candidates(table: np.ndarray, token_bytes: list[bytes], usable: np.ndarray) -> np.ndarray:
    """A step's candidates (C,) by token id: the TOP_K most frequent usable tokens (ties:
    the lower id), each kept unless it is a prefix of a more likely one kept, or one kept is
    its prefix — so that no candidate is a prefix of another."""
    order = _most_frequent(np.where(usable, table, -1), TOP_K)
    kept: set[bytes] = set()  # the candidates' bytes
    prefixes: set[bytes] = set()  # every prefix of them
    chosen = []
    for token in order:
        text = token_bytes[token]
        if (
            not usable[token]
            or text in prefixes
            or any(text[:i] in kept for i in range(1, len(text)))
        ):
            continue
        kept.add(text)
        prefixes.update(text[:i] for i in range(1, len(text) + 1))
        chosen.append(int(token))
    return np.array(sorted(chosen), dtype=np.int64)


def _most_frequent(values: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k largest values (integers), largest first, the lower index
    first on ties: np.argsort(-values, kind="stable")[:k], sorting only the values at or
    above a threshold that at least k reach (a few thousand of Gemma's 262,144)."""
    threshold = int(values.max())
    while threshold > 0 and np.count_nonzero(values >= threshold) < k:
        threshold //= 2
    subset = np.flatnonzero(values >= threshold) if threshold > 0 else np.arange(len(values))
    return subset[np.lexsort((subset, -values[subset]))][:k]


def candidate_table(table: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The candidates' frequencies as a table summing to the coder's total, every entry >= 1
    (floors; the leftover to the first largest)."""
    mass = table[chosen]
    freq = mass * (rangecoder.TOTAL - len(chosen)) // int(mass.sum()) + 1
    freq[int(np.argmax(mass))] += rangecoder.TOTAL - int(freq.sum())
    return freq


def _usable(loaded: LoadedModel) -> np.ndarray:
    """Tokens a cover text may hold: non-empty whole UTF-8, not BOS."""
    token_bytes = loaded.model.vocab.token_bytes
    usable = np.zeros(len(token_bytes), dtype=bool)
    for t, text in enumerate(token_bytes):
        with contextlib.suppress(UnicodeDecodeError):
            usable[t] = bool(text) and bool(text.decode("utf-8"))
    usable[loaded.model.config.bos_token_id] = False
    return usable


# ---------------------------------------------------------------------------- hide, reveal


@dataclass
class Cover:
    text: bytes
    tokens: list[int]
    sealed_bytes: int  # what the text carries: salt, length, payload and tag
    payload_tokens: int  # tokens until the sealed bytes were all settled


def hide(
    payload: bytes,
    loaded: LoadedModel,
    passphrase: bytes,
    prompt: bytes = b"",
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> Cover:
    """A cover text that carries `payload`, sealed under `passphrase` (random_bytes: the
    salt's and the text's tail's randomness; fixed only to make a test reproducible)."""
    sealed = seal(payload, passphrase, random_bytes(SALT_BYTES))
    # what follows the sealed bytes only shapes the text's tail: random, as the rest looks
    source = rangecoder.Decoder(sealed + random_bytes(64 + 4 * EXTRA_TOKENS))
    interval, steps = rangecoder.Interval(), Steps(loaded, prompt)
    token_bytes, usable = loaded.model.vocab.token_bytes, _usable(loaded)
    tokens: list[int] = []
    settled_at = 0
    while True:
        if not settled_at and len(tokens) > MAX_TOKENS_PER_BYTE * (interval.settled() + 8):
            raise InertError("this model's text carries too little to hide anything in it")
        allowed = candidates(steps.table, token_bytes, usable)
        freq = candidate_table(steps.table, allowed)
        chosen, start, size = rangecoder.find(np.cumsum(freq), source.target())
        last = chosen == len(freq) - 1
        source.consume(start, size, last)
        interval.push(start, size, last)
        token = int(allowed[chosen])
        tokens.append(token)
        steps.advance(token)
        if not settled_at and interval.settled() >= len(sealed):
            settled_at = len(tokens)
        if settled_at and (
            token_bytes[token].endswith(ENDINGS) or len(tokens) - settled_at >= EXTRA_TOKENS
        ):
            break
    text = loaded.model.vocab.detokenize(tokens)
    return Cover(text, tokens, len(sealed), settled_at)


def _parse(
    cover: bytes, loaded: LoadedModel, passphrase: bytes, prompt: bytes
) -> Iterator[tuple[int, rangecoder.Interval]]:
    """The tokens of a cover text, each with the interval of the sealed bytes so far: at
    each step the one candidate the rest of the text begins with."""
    interval, steps = rangecoder.Interval(), Steps(loaded, prompt)
    token_bytes, usable = loaded.model.vocab.token_bytes, _usable(loaded)
    position = 0
    while position < len(cover):
        allowed = candidates(steps.table, token_bytes, usable)
        fits = (i for i, t in enumerate(allowed) if cover.startswith(token_bytes[t], position))
        chosen = next(fits, None)
        if chosen is None:
            raise CoverError(f"no hidden work here: {WRONG} (byte {position} fits no token)")
        token = int(allowed[chosen])
        freq = candidate_table(steps.table, allowed)
        interval.push(int(freq[:chosen].sum()), int(freq[chosen]), chosen == len(freq) - 1)
        position += len(token_bytes[token])
        steps.advance(token)
        yield token, interval


def read_tokens(
    cover: bytes, loaded: LoadedModel, passphrase: bytes, prompt: bytes = b""
) -> list[int]:
    """The tokens a cover text was made of, as reveal reads them."""
    return [token for token, _ in _parse(cover, loaded, passphrase, prompt)]


def reveal(cover: bytes, loaded: LoadedModel, passphrase: bytes, prompt: bytes = b"") -> bytes:
    """The payload a cover text carries; one clear error if it carries none for this
    passphrase, blob and prompt."""
    need, key, head = None, b"", SALT_BYTES + LENGTH_BYTES
    for _, interval in _parse(cover, loaded, passphrase, prompt):
        if need is None and interval.settled() >= head:
            need, key = sealed_length(interval.prefix(head), passphrase)
        if need is not None and interval.settled() >= need:
            return unseal(interval.prefix(need), key)
    raise CoverError(f"the text ends before its hidden work does: {WRONG}, or it was cut short")
