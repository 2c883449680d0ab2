"""Works <-> token ids: any bytes in, the identical bytes out.

Every token id stands for a fixed byte string (`Vocabulary.token_bytes`), so detokenizing
is concatenation and cannot normalise anything. Tokenizing asks the blob's Hugging Face
tokenizer for ids and keeps them only where they detokenize to exactly the input bytes;
elsewhere (invalid UTF-8, text a tokenizer would normalise) it falls back to one byte
token per byte. Only the encoder tokenizes, so the decoder never depends on the tokenizer
library: it only concatenates byte strings.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from functools import cache

import numpy as np
from tokenizers import Tokenizer

from .errors import InertError
from .heap import release_freed_memory

PIECE = 1 << 16  # tokenize in pieces of ~64 KiB cut after a newline: bounded memory, batched
BATCH = 32  # pieces handed to the tokenizer at once (its per-token objects are large)
# a tokenizer whose JSON is larger is dropped after each tokenize (and built again, ~1 s for
# Gemma's 262,144 tokens, whose tokenizer holds 380 MiB): smaller ones are kept
KEEP_TOKENIZER = 4 << 20


@cache
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level map, inverted: the printable character standing for each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


_BYTE_PIECE = re.compile(r"<0x([0-9A-F]{2})>")  # SentencePiece's byte-fallback tokens
SPACE_PIECE = "\u2581"  # SentencePiece's stand-in for a space


def _decoder_types(spec: dict) -> set[str]:
    decoder = spec.get("decoder") or {}
    return {d.get("type") for d in decoder.get("decoders", [decoder])}


class Vocabulary:
    """A tokenizer seen as: token id <-> the bytes it stands for.

    Two kinds: byte-level BPE (GPT-2, Llama 3, Qwen2: each vocabulary character stands for
    one byte) and SentencePiece-style BPE with byte fallback (Gemma: "\u2581" stands for a
    space, tokens <0x00>..<0xFF> for single bytes, the rest for their UTF-8).
    """

    def __init__(self, tokenizer_json: str) -> None:
        self.json = tokenizer_json.encode()  # UTF-8: a quarter of a str's 4 bytes per character
        self._tokenizer: Tokenizer | None = None
        spec = json.loads(tokenizer_json)
        decoders = _decoder_types(spec)
        if "ByteLevel" in decoders:
            self.kind, token_text = "byte-level BPE", self._byte_level_text()
        elif {"ByteFallback", "Replace"} <= decoders:
            self.kind, token_text = "SentencePiece-style BPE", self._sentencepiece_text
        else:
            raise InertError(
                "unsupported tokenizer: inert needs byte-level BPE (GPT-2 style) or "
                "SentencePiece-style BPE with byte fallback"
            )
        special = {t["id"]: t["content"] for t in spec.get("added_tokens", [])}
        vocab = spec.get("model", {}).get("vocab")
        if isinstance(vocab, dict):  # BPE: what the tokenizer would report, without building it
            vocab = vocab | {text: i for i, text in special.items()}
        else:
            vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        self.token_bytes: list[bytes] = [b""] * (max(vocab.values(), default=-1) + 1)
        for text, i in vocab.items():
            if i in special:
                self.token_bytes[i] = special[i].encode()  # literal text, e.g. b"<s>"
            else:
                self.token_bytes[i] = token_text(text)
        byte_ids = {}
        for i, b in enumerate(self.token_bytes):
            if len(b) == 1 and i not in special:
                byte_ids.setdefault(b[0], i)
        if len(byte_ids) != 256:
            raise InertError(f"tokenizer lacks byte tokens for {256 - len(byte_ids)} byte values")
        self.byte_ids = np.array([byte_ids[b] for b in range(256)], dtype=np.int64)  # (256,)

    @staticmethod
    def _byte_level_text() -> Callable[[str], bytes]:
        alphabet = _byte_level_alphabet()
        return lambda text: bytes(alphabet[c] for c in text)

    @staticmethod
    def _sentencepiece_text(text: str) -> bytes:
        if match := _BYTE_PIECE.fullmatch(text):
            return bytes([int(match[1], 16)])
        return text.replace(SPACE_PIECE, " ").encode()

    @property
    def tokenizer(self) -> Tokenizer:
        """The Hugging Face tokenizer, built when first needed: decoding never needs it."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_buffer(self.json)
        return self._tokenizer

    def __len__(self) -> int:
        return len(self.token_bytes)

    def detokenize(self, ids: np.ndarray | list[int]) -> bytes:
        table = self.token_bytes
        return b"".join([table[i] for i in ids])

    def tokenize(self, work: bytes) -> np.ndarray:
        """Token ids (T,) int64 with detokenize(ids) == work, always."""
        out: list[np.ndarray] = []
        pieces = _pieces(work)
        while batch := list(itertools.islice(pieces, BATCH)):  # bounded memory for any work
            texts = [p.decode() for p, valid in batch if valid]
            encoded = iter(
                self.tokenizer.encode_batch(texts, add_special_tokens=False) if texts else ()
            )
            for piece, valid in batch:
                if not valid:
                    out.append(self.byte_ids[np.frombuffer(piece, dtype=np.uint8)])
                    continue
                ids = next(encoded).ids
                if self.detokenize(ids) == piece:
                    out.append(np.array(ids, dtype=np.int64))
                else:
                    out.extend(self._line_by_line(piece))
        if len(self.json) > KEEP_TOKENIZER:
            self._tokenizer = None  # hundreds of MB (Gemma's): not held beside the weights
            release_freed_memory()
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def _line_by_line(self, piece: bytes) -> list[np.ndarray]:
        """The tokenizer altered this piece: keep its ids line by line where they are exact."""
        out = []
        for line in piece.splitlines(keepends=True):
            ids = self.tokenizer.encode(line.decode(), add_special_tokens=False).ids
            if self.detokenize(ids) == line:
                out.append(np.array(ids, dtype=np.int64))
            else:
                out.append(self.byte_ids[np.frombuffer(line, dtype=np.uint8)])
        return out


_INVALID = re.compile(r"[\udc80-\udcff]+")  # surrogateescape's stand-ins for undecodable bytes


def _pieces(work: bytes) -> Iterator[tuple[bytes, bool]]:
    """Split a work into valid-UTF-8 pieces of about PIECE bytes and runs of invalid bytes."""
    text = work.decode("utf-8", errors="surrogateescape")
    start = 0
    for match in _INVALID.finditer(text):
        yield from _valid_pieces(text[start : match.start()])
        yield match.group().encode("utf-8", errors="surrogateescape"), False
        start = match.end()
    yield from _valid_pieces(text[start:])


def _valid_pieces(text: str) -> Iterator[tuple[bytes, bool]]:
    while text:
        cut = (text.find("\n", PIECE, 2 * PIECE) + 1) or min(len(text), 2 * PIECE)
        yield text[:cut].encode(), True
        text = text[cut:]


def train_tokenizer(texts: list[str], vocab_size: int, bos: str = "<s>") -> str:
    """Train a byte-level BPE tokenizer (all 256 byte tokens, plus `bos`); returns its JSON."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[bos],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer.to_str()
