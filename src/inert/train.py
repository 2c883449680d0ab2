"""Corpus -> tokenizer + small Llama-family model trained in torch -> model blob.

Needs the optional `train` extra (torch); the blob it writes needs only numpy to use. The
torch model computes exactly the architecture of engine.py in ordinary float32, and its
weights are exported through the same int8 quantization and blob writer as any model.

Reproducible: the tokenizer is trained on a fixed sample of the corpus, weights start from
`seed`, and the batch of step k is drawn from a generator seeded by (seed, k), so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .architecture import LayerSpec, ModelConfig
from .errors import InertError
from .modelfile import inverse_frequencies, model_bytes, rope_tables
from .tokens import Vocabulary, train_tokenizer

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:  # pragma: no cover - exercised only without the extra
    torch = None  # type: ignore[assignment]

BOS = "<s>"


@dataclass(frozen=True)
class TrainConfig:
    vocab_size: int = 4096  # byte-level BPE; 256 byte tokens + merges + BOS
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 4
    hidden_dim: int = 768
    context: int = 512  # the model's max_seq_len and the training sequence length
    batch_size: int = 16  # sequences per step
    steps: int = 2000
    lr: float = 2e-3  # peak, after warmup; cosine decay to lr/10
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    source_cap: int = (
        8 << 20
    )  # bytes taken from each corpus file: keeps huge dictionaries from dominating
    threads: int = 0  # torch CPU threads; 0 = all cores
    checkpoint_every: int = 200  # steps between checkpoints (when a checkpoint path is given)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size,
            dim=self.dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            hidden_dim=self.hidden_dim,
            max_seq_len=self.context,
            bos_token_id=0,
            activation="silu",
            tied_embeddings=True,
        )


def require_torch() -> None:
    if torch is None:
        raise InertError("training needs torch", hint="pip install 'inert[train]'")


# ---------------------------------------------------------------------------- data


def read_corpus(folder: Path, cap: int) -> list[str]:
    """Each *.txt under folder (or folder/train), at most `cap` bytes of it in 64 KiB slices spread evenly."""
    root = folder / "train" if (folder / "train").is_dir() else folder
    files = sorted(root.rglob("*.txt"))
    if not files:
        raise InertError(
            f"no .txt files in {root}",
            hint="build a corpus with: python scripts/build_corpus.py DIR",
        )
    texts = []
    for path in files:
        data = path.read_bytes()
        if len(data) > cap:
            piece, count = 64 << 10, cap // (64 << 10)
            starts = np.linspace(0, len(data) - piece, count).astype(int)
            data = b"".join(data[s : s + piece] for s in starts)
        texts.append(data.decode("utf-8", errors="replace"))
    return texts


def split_validation(tokens: np.ndarray, fraction: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    cut = int(len(tokens) * (1 - fraction))
    return tokens[:cut], tokens[cut:]


# ---------------------------------------------------------------------------- model


if torch is not None:

    class RMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float) -> None:
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Block(nn.Module):
        """One layer as architecture.py describes it (the engine's arithmetic, in float32)."""

        def __init__(self, c: ModelConfig, spec: LayerSpec) -> None:
            super().__init__()
            hd, bias = c.head_dim, spec.qkv_bias
            self.c, self.spec = c, spec
            self.attn_norm, self.mlp_norm = RMSNorm(c.dim, c.norm_eps), RMSNorm(c.dim, c.norm_eps)
            self.wq = nn.Linear(c.dim, c.n_heads * hd, bias=bias)
            self.wk = nn.Linear(c.dim, c.n_kv_heads * hd, bias=bias)
            self.wv = nn.Linear(c.dim, c.n_kv_heads * hd, bias=bias)
            self.wo = nn.Linear(c.n_heads * hd, c.dim, bias=False)
            self.w_gate = nn.Linear(c.dim, c.hidden_dim, bias=False)
            self.w_up = nn.Linear(c.dim, c.hidden_dim, bias=False)
            self.w_down = nn.Linear(c.hidden_dim, c.dim, bias=False)
            if spec.qk_norm:  # made after the rest: a plain layer's parameters stay as they were
                self.q_norm, self.k_norm = RMSNorm(hd, c.norm_eps), RMSNorm(hd, c.norm_eps)
            if spec.post_norms:
                self.post_attn_norm = RMSNorm(c.dim, c.norm_eps)
                self.post_mlp_norm = RMSNorm(c.dim, c.norm_eps)

        def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            c, spec, (B, T, _) = self.c, self.spec, x.shape
            h = self.attn_norm(x)
            q = self.wq(h).view(B, T, c.n_heads, c.head_dim)
            k = self.wk(h).view(B, T, c.n_kv_heads, c.head_dim)
            v = self.wv(h).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
            if spec.qk_norm:
                q, k = self.q_norm(q), self.k_norm(k)
            q = rotate(q.transpose(1, 2), cos, sin)  # (B, H, T, hd)
            k = rotate(k.transpose(1, 2), cos, sin)
            group = c.n_heads // c.n_kv_heads  # query head j reads key/value head j // group
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
            # torch's own 1/sqrt(hd) unless the model says otherwise (the same training bits)
            scale = None if c.attn_scale == 1.0 / math.sqrt(c.head_dim) else c.attn_scale
            if spec.window:
                position = torch.arange(T, device=x.device)
                gap = position[:, None] - position[None, :]  # query - key
                mask = (gap >= 0) & (gap < spec.window)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
            else:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
            a = self.wo(out.transpose(1, 2).reshape(B, T, -1))
            x = x + (self.post_attn_norm(a) if spec.post_norms else a)
            h = self.mlp_norm(x)
            gate = self.w_gate(h)
            act = F.silu(gate) if c.activation == "silu" else F.gelu(gate, approximate="tanh")
            m = self.w_down(act * self.w_up(h))
            return x + (self.post_mlp_norm(m) if spec.post_norms else m)

    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    class TorchModel(nn.Module):
        """The architecture of a ModelConfig in torch, for training; exported into a blob."""

        def __init__(self, c: ModelConfig) -> None:
            super().__init__()
            self.c = c
            self.embed = nn.Embedding(c.vocab_size, c.dim)
            self.blocks = nn.ModuleList(Block(c, c.layers[i]) for i in range(c.n_layers))
            self.norm = RMSNorm(c.dim, c.norm_eps)
            if not c.tied_embeddings:
                self.output = nn.Linear(c.dim, c.vocab_size, bias=False)
            for r, theta in enumerate(c.rope_thetas):  # the very tables the blob will carry
                cos, sin = rope_tables(c, inverse_frequencies(c, theta))
                self.register_buffer(f"cos{r}", torch.from_numpy(cos), persistent=False)
                self.register_buffer(f"sin{r}", torch.from_numpy(sin), persistent=False)
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    std = (
                        0.02 / math.sqrt(2 * c.n_layers)
                        if name.endswith(("wo.weight", "w_down.weight"))
                        else 0.02
                    )
                    nn.init.normal_(p, std=std)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            c, T = self.c, tokens.shape[1]
            x = self.embed(tokens)
            if c.embed_scale != 1.0:
                x = x * c.embed_scale
            for block in self.blocks:
                table = block.spec.rope
                x = block(x, getattr(self, f"cos{table}")[:T], getattr(self, f"sin{table}")[:T])
            head = self.embed.weight if c.tied_embeddings else self.output.weight
            logits = self.norm(x) @ head.T
            if c.logit_softcap:
                logits = c.logit_softcap * torch.tanh(logits / c.logit_softcap)
            return logits

        def named_weights(self) -> dict[str, torch.Tensor]:
            """Every parameter under its blob name (architecture.py)."""
            w = {"embed": self.embed.weight, "norm": self.norm.weight}
            if not self.c.tied_embeddings:
                w["output"] = self.output.weight
            for i, b in enumerate(self.blocks):
                for name in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"):
                    w[f"layers.{i}.{name}"] = getattr(b, name).weight
                for which in ("q", "k", "v") if b.spec.qkv_bias else ():
                    w[f"layers.{i}.b{which}"] = getattr(b, f"w{which}").bias
                norms = ["attn_norm", "mlp_norm"]
                norms += ["q_norm", "k_norm"] if b.spec.qk_norm else []
                norms += ["post_attn_norm", "post_mlp_norm"] if b.spec.post_norms else []
                for name in norms:
                    w[f"layers.{i}.{name}"] = getattr(b, name).weight
            return w

        def export_weights(self) -> dict[str, np.ndarray]:
            return {k: v.detach().double().numpy() for k, v in self.named_weights().items()}


# ---------------------------------------------------------------------------- training


def batch_at(
    step: int, seed: int, tokens: np.ndarray, batch: int, context: int, bos: int
) -> np.ndarray:
    """Sequences (batch, context+1): BOS then context tokens from random places (seeded by step)."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - context, size=batch)
    rows = np.stack([tokens[s : s + context] for s in starts])
    return np.concatenate([np.full((batch, 1), bos), rows], axis=1)


def learning_rate(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass
class TrainResult:
    blob: bytes
    model_config: ModelConfig
    train_loss: float  # nats per token, mean of the last steps
    valid_bits_per_byte: float
    tokens_per_second: float


def train(
    corpus: Path,
    cfg: TrainConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
    report: Callable[[int, float, float], None] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train from a corpus folder; `report(step, loss, tokens_per_second)` after every step."""
    require_torch()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    state = (
        torch.load(checkpoint, weights_only=False)
        if resume and checkpoint and checkpoint.exists()
        else None
    )
    if state is not None:
        saved, defaults = (
            state["config"],
            asdict(TrainConfig()),
        )  # fields added later: their defaults
        changed = [
            k for k, v in asdict(cfg).items() if k != "threads" and saved.get(k, defaults[k]) != v
        ]
        if changed:
            raise InertError(
                f"checkpoint {checkpoint} was made with different settings: {', '.join(changed)}",
                hint="resume with the same options, or start over without --resume",
            )
        tokenizer_json = state["tokenizer"]
    else:
        texts = read_corpus(corpus, cfg.source_cap)
        log(f"training the tokenizer on {sum(len(t) for t in texts):,} characters")
        tokenizer_json = train_tokenizer(texts, cfg.vocab_size, BOS)
    vocab = Vocabulary(tokenizer_json)
    texts = read_corpus(corpus, cfg.source_cap)
    data = np.concatenate([vocab.tokenize(t.encode()) for t in texts])
    train_tokens, valid_tokens = split_validation(data)
    log(
        f"{len(data):,} tokens ({sum(len(t.encode()) for t in texts) / len(data):.2f} bytes per token)"
    )
    mc = cfg.model_config(len(vocab))
    model = TorchModel(mc)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )
    first_step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_step = state["step"]
        log(f"resumed at step {first_step}")
    recent: list[float] = []
    start_time, tokens_seen = time.perf_counter(), 0
    for step in range(first_step, cfg.steps):
        batch = torch.from_numpy(
            batch_at(step, cfg.seed, train_tokens, cfg.batch_size, cfg.context, mc.bos_token_id)
        )
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens_seen += batch[:, 1:].numel()
        recent = [*recent[-49:], loss.item()]
        rate = tokens_seen / (time.perf_counter() - start_time)
        if report:
            report(step + 1, loss.item(), rate)
        if checkpoint and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            save_checkpoint(checkpoint, model, optimizer, step + 1, cfg, tokenizer_json)
    valid_bpb = validation_bits_per_byte(model, vocab, valid_tokens, cfg.context)
    blob = model_bytes(mc, tokenizer_json, model.export_weights())
    return TrainResult(
        blob,
        mc,
        float(np.mean(recent)) if recent else float("nan"),
        valid_bpb,
        tokens_seen / max(time.perf_counter() - start_time, 1e-9),
    )


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: object, step: int, cfg: TrainConfig, tokenizer: str
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "config": asdict(cfg),
            "tokenizer": tokenizer,
        },
        tmp,
    )
    tmp.replace(path)


def validation_bits_per_byte(
    model: nn.Module, vocab: Vocabulary, tokens: np.ndarray, context: int
) -> float:
    """Float32 cross-entropy of held-out tokens, coded in segments from BOS as keys are."""
    model.eval()
    nats = 0.0
    with torch.no_grad():
        for a in range(0, len(tokens) - 1, context):
            seg = torch.from_numpy(np.concatenate([[0], tokens[a : a + context]]))[None]
            logits = model(seg[:, :-1])
            nats += F.cross_entropy(logits[0], seg[0, 1:], reduction="sum").item()
    model.train()
    nbytes = len(vocab.detokenize(tokens))
    return nats / math.log(2) / max(nbytes, 1)
