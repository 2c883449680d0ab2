"""Model blobs: one safetensors file <-> config, vocabulary, int8 weights and tables.

Layout (docs/FORMAT.md, "Model blobs"): one metadata entry `inert`, a JSON object with
`format` ("inert-model/2"; "inert-model/1" blobs are read as well), `config` (ModelConfig's
fields, architecture.py) and `tokenizer` (a Hugging Face tokenizer JSON, as a string) — one
entry because safetensors writes several in random order, and a blob's bytes (hence its id)
must depend only on its content. Tensors: for every matrix W (out, in), `NAME.q` int8
(out, in) and `NAME.scale` float32 (out,) with W ~= q * scale[:, None]; norm gains and
projection biases float32; rotary tables `rope.R.cos`, `rope.R.sin` float32
(max_seq_len, head_dim/2) (inert-model/1: one table, `rope.cos` and `rope.sin`).
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save

from .architecture import LayerSpec, ModelConfig
from .errors import InertError
from .heap import release_freed_memory
from .store import MODEL_FORMATS
from .streams import atomic_output
from .tokens import Vocabulary

FORMAT = MODEL_FORMATS[-1]  # what new blobs are written as
__all__ = ["FORMAT", "LayerSpec", "Model", "ModelConfig", "model_bytes", "read_model"]


@dataclass
class Model:
    config: ModelConfig
    vocab: Vocabulary
    tensors: dict[str, np.ndarray]  # as stored (v1 rope names read as rope.0.*)
    source: dict | None = None  # what an imported blob was made from
    mapping: MappedTensors | None = None  # where the large tensors are mapped from

    def drop_pages(self, names: list[str]) -> None:
        """Tell the OS these mapped tensors' pages are not needed now (a copy of them is in
        use): they leave this process's memory and come back from the file if read."""
        if self.mapping:
            self.mapping.drop_pages(names)


# ---------------------------------------------------------------------------- writing


QUANTIZE_ROWS = 4096  # rows converted at a time: a 262,144-row embedding stays in bounded memory


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output row: w (out, in) ~= q * scale[:, None]."""
    q = np.empty(w.shape, dtype=np.int8)
    scale = np.empty(w.shape[0], dtype=np.float32)
    for a in range(0, w.shape[0], QUANTIZE_ROWS):  # rows are independent
        rows = np.asarray(w[a : a + QUANTIZE_ROWS], dtype=np.float64)
        scale[a : a + QUANTIZE_ROWS] = np.max(np.abs(rows), axis=1) / 127.0
        safe = np.where(scale[a : a + QUANTIZE_ROWS] > 0, scale[a : a + QUANTIZE_ROWS], 1.0)
        q[a : a + QUANTIZE_ROWS] = np.clip(
            np.rint(rows / safe.astype(np.float64)[:, None]), -127, 127
        )
    return q, scale


def inverse_frequencies(config: ModelConfig, theta: float) -> np.ndarray:
    """(head_dim/2,) float64: the plain rotary frequencies theta**(-j/(hd/2))."""
    half = config.head_dim // 2
    return theta ** (-np.arange(half, dtype=np.float64) / half)


def rope_tables(
    config: ModelConfig, inv_freq: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (max_seq_len, head_dim/2) float32, computed once here and frozen in the blob.

    `inv_freq` (hd/2,): the table's frequencies, for rotary scalings (Llama 3's, linear)
    that importers work out; the plain ones of config.rope_theta when None.
    """
    if inv_freq is None:
        inv_freq = inverse_frequencies(config, config.rope_theta)
    angles = np.arange(config.max_seq_len, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def model_bytes(
    config: ModelConfig,
    tokenizer_json: str,
    weights: dict[str, np.ndarray],
    source: dict | None = None,
) -> bytes:
    """Serialize float weights into a model blob (inert-model/2).

    weights: matrices (out, in), gains and biases (their length), and optionally
    `rope.R.inv_freq` (hd/2,) for table R; each an array or a function returning it (an
    importer's lazy read: one float matrix in memory at a time). `source`: what the blob was
    made from (family, tensor types...), kept in the metadata for `inert blob info`.
    """
    vocab = Vocabulary(tokenizer_json)
    if len(vocab) != config.vocab_size:
        raise InertError(f"tokenizer has {len(vocab)} tokens, config says {config.vocab_size}")
    tensors: dict[str, np.ndarray] = {}

    def weight(name: str) -> np.ndarray:
        w = weights[name]
        return np.asarray(w() if callable(w) else w)

    for name, shape in config.matrices().items():
        w = weight(name)
        if w.shape != shape:
            raise InertError(f"weight {name} has shape {w.shape}, expected {shape}")
        tensors[f"{name}.q"], tensors[f"{name}.scale"] = quantize_rows(w)
    for name, size in (config.gains() | config.biases()).items():
        tensors[name] = weight(name).astype(np.float32).reshape(size)
    for r, theta in enumerate(config.rope_thetas):
        inv_freq = weights.get(f"rope.{r}.inv_freq")
        if inv_freq is None:
            inv_freq = inverse_frequencies(config, theta)
        tensors[f"rope.{r}.cos"], tensors[f"rope.{r}.sin"] = rope_tables(config, inv_freq)
    described = {"format": FORMAT, "config": asdict(config), "tokenizer": tokenizer_json}
    if source:
        described["source"] = source
    metadata = {"inert": json.dumps(described, sort_keys=True)}
    return save(tensors, metadata=metadata)


def write_model(
    path: str,
    config: ModelConfig,
    tokenizer_json: str,
    weights: dict[str, np.ndarray],
    force: bool = False,
) -> None:
    data = model_bytes(config, tokenizer_json, weights)
    with atomic_output(path, force=force) as out:
        out.write(data)


# ---------------------------------------------------------------------------- reading


def read_model(path: str | Path) -> Model:
    """The blob's model; its int8 matrices memory-mapped (the file's pages, shared, not copied)."""
    try:
        with safe_open(str(path), framework="np") as f:
            described = json.loads((f.metadata() or {}).get("inert", "{}"))
            if described.get("format") not in MODEL_FORMATS:
                raise InertError(f"{path} is not an inert model blob ({', '.join(MODEL_FORMATS)})")
            config = ModelConfig.from_json(json.dumps(described["config"]))
            vocab = Vocabulary(described["tokenizer"])
            mapping = MappedTensors(path)
            tensors = dict(mapping.tensors)
            for name in f.keys():  # noqa: SIM118 - not a dict
                if name not in tensors:
                    tensors[name] = f.get_tensor(name)
        if described["format"] == "inert-model/1":  # one rotary table, named plainly
            tensors["rope.0.cos"] = tensors.pop("rope.cos", None)
            tensors["rope.0.sin"] = tensors.pop("rope.sin", None)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
        raise InertError(f"model blob {path} is damaged or unreadable: {e}") from None
    _check(config, vocab, tensors, path)
    release_freed_memory()  # the parsed metadata (20 MB of JSON for Gemma's tokenizer)
    return Model(config, vocab, tensors, described.get("source"), mapping)


MAPPED = {"I8": np.int8, "F32": np.float32}  # safetensors dtypes read in place
MAP_BYTES = 1 << 20  # tensors this large are mapped (the weights, the rotary tables)


class MappedTensors:
    """The large int8 and float32 tensors of a safetensors file, as read-only views of one
    memory map: the blob's pages, shared and read on demand, not copied.

    The container is a little-endian u64 header length, a JSON header giving each tensor's
    dtype, shape and byte range after the header, then the data (safetensors' format).
    """

    def __init__(self, path: str | Path) -> None:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.tensors: dict[str, np.ndarray] = {}
        self._ranges: dict[str, tuple[int, int]] = {}
        for name, entry in header.items():
            if name == "__metadata__" or entry["dtype"] not in MAPPED:
                continue
            dtype = np.dtype(MAPPED[entry["dtype"]]).newbyteorder("<")  # little-endian
            begin, end = entry["data_offsets"]
            shape = tuple(entry["shape"])
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"tensor {name}: {end - begin} bytes for shape {shape}")
            if end - begin >= MAP_BYTES:
                start = 8 + length + begin
                self.tensors[name] = np.frombuffer(
                    self._map, dtype, math.prod(shape), start
                ).reshape(shape)
                self._ranges[name] = (start, start + end - begin)

    def drop_pages(self, names: list[str]) -> None:
        page = mmap.PAGESIZE
        for name in names:
            if name in self._ranges:
                start, end = self._ranges[name]
                first, last = -(-start // page) * page, end // page * page  # whole pages inside
                if last > first:
                    self._map.madvise(mmap.MADV_DONTNEED, first, last - first)


def _check(
    config: ModelConfig, vocab: Vocabulary, tensors: dict[str, np.ndarray], path: object
) -> None:
    expected: dict[str, tuple[tuple[int, ...], type]] = {}
    for name, shape in config.matrices().items():
        expected[f"{name}.q"] = (shape, np.int8)
        expected[f"{name}.scale"] = ((shape[0],), np.float32)
    for name, size in (config.gains() | config.biases()).items():
        expected[name] = ((size,), np.float32)
    for r in range(len(config.rope_thetas)):
        for name in (f"rope.{r}.cos", f"rope.{r}.sin"):
            expected[name] = ((config.max_seq_len, config.head_dim // 2), np.float32)
    for name, (shape, dtype) in expected.items():
        t = tensors.get(name)
        if t is None or t.shape != shape or t.dtype != dtype:
            raise InertError(f"model blob {path} is damaged: tensor {name} is missing or malformed")
    if len(vocab) != config.vocab_size:
        raise InertError(f"model blob {path} is damaged: vocabulary size does not match its config")
