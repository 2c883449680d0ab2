"""`inert train`: a seeded, resumable run that exports a working blob (needs the train extra)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from inert import codec  # noqa: E402
from inert.modelfile import read_model  # noqa: E402
from inert.store import open_blob  # noqa: E402
from inert.train import TrainConfig, train  # noqa: E402

CORPUS = Path(__file__).parent / "golden"
TINY = TrainConfig(
    vocab_size=300,
    dim=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    hidden_dim=64,
    context=32,
    batch_size=4,
    steps=12,
    warmup=2,
    lr=1e-2,
    threads=1,
)


def test_training_lowers_the_loss_and_exports_a_blob_that_codes(tmp_path: Path) -> None:
    losses: list[float] = []
    result = train(
        CORPUS, TINY, report=lambda step, loss, rate: losses.append(loss), log=lambda _: None
    )
    assert len(losses) == TINY.steps and losses[-1] < losses[0]
    path = tmp_path / "m.blob"
    path.write_bytes(result.blob)
    assert read_model(path).config.n_layers == 2
    loaded = codec.load_model(open_blob(path))
    work = (CORPUS / "corpus.txt").read_bytes()
    key, _ = codec.encode_work(work, loaded)
    assert codec.decode_work(key, loaded) == work


def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    cfg = replace(TINY, checkpoint_every=4)
    whole = train(CORPUS, cfg, log=lambda _: None).blob
    checkpoint = tmp_path / "run.ckpt"

    def interrupt(step: int, loss: float, rate: float) -> None:
        if step == 6:  # after the checkpoint of step 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(CORPUS, cfg, checkpoint=checkpoint, report=interrupt, log=lambda _: None)
    logs: list[str] = []
    resumed = train(CORPUS, cfg, checkpoint=checkpoint, resume=True, log=logs.append).blob
    assert "resumed at step 4" in logs
    assert resumed == whole


def test_explain_finds_recalled_text_and_not_a_new_paragraph(tmp_path: Path) -> None:
    from inert.ledger import RecallRule, build_ledger, recalled_spans

    cfg = replace(
        TINY, dim=64, hidden_dim=128, context=64, batch_size=16, steps=250, warmup=10, threads=2
    )
    path = tmp_path / "memorised.blob"
    path.write_bytes(
        train(CORPUS, cfg, log=lambda _: None).blob
    )  # overfits corpus.txt: it recalls it
    text = (CORPUS / "corpus.txt").read_bytes()
    cut = text.index(b"\n\n") + 2
    new = b"A completely different paragraph about quantum gardening, violet submarines and xylophones.\n\n"
    work = text[:cut] + new + text[cut:]
    ledger = build_ledger(
        work, codec.load_model(open_blob(path)), codec.CodecSettings(segment_tokens=64)
    )
    spans = recalled_spans(ledger, RecallRule(min_tokens=16, max_mean_bits=0.5))
    assert spans, "the memorised text is recalled"
    assert all(
        s.end <= cut or s.start >= cut + len(new) for s in spans
    )  # never inside the new paragraph
    recalled = sum(s.end - s.start for s in spans)
    assert recalled > 0.6 * len(text)


def test_the_torch_model_is_the_architecture_the_blob_describes(tmp_path: Path) -> None:
    """One description, three users: the torch model (training), the float64 reference and
    the blob agree layer for layer on a model using every variation the format has."""
    import numpy as np
    import torch

    from inert.architecture import LayerSpec, ModelConfig
    from inert.modelfile import model_bytes
    from inert.reference import ReferenceModel
    from inert.tokens import Vocabulary, train_tokenizer
    from inert.train import TorchModel

    tokenizer = train_tokenizer(
        [(Path(__file__).parent / "golden" / "corpus.txt").read_text()], 300
    )
    config = ModelConfig(
        vocab_size=len(Vocabulary(tokenizer)), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
        hidden_dim=48, max_seq_len=32, bos_token_id=0, activation="gelu_tanh",
        tied_embeddings=False, head_dim=12, rope_thetas=(10000.0, 50.0), embed_scale=2.5,
        attn_scale=0.2, logit_softcap=15.0,
        layers=(
            LayerSpec(window=5, rope=1, qk_norm=True, qkv_bias=True, post_norms=True),
            LayerSpec(),
        ),
    )  # fmt: skip
    torch.manual_seed(1)
    model = TorchModel(config).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() == 2 else 0.2) + (p.dim() == 1))
    blob = tmp_path / "all.blob"
    blob.write_bytes(model_bytes(config, tokenizer, model.export_weights()))
    stored = read_model(blob)
    with torch.no_grad():  # the blob's int8 rows back into the torch model
        for name, p in model.named_weights().items():
            t = stored.tensors
            w = (
                t[f"{name}.q"] * t[f"{name}.scale"].astype(np.float64)[:, None]
                if f"{name}.q" in t
                else t[name]
            )
            p.copy_(torch.from_numpy(np.asarray(w, dtype=np.float64)))
    tokens = np.arange(20) % config.vocab_size
    with torch.no_grad():
        theirs = torch.log_softmax(model(torch.tensor(tokens[None]))[0], -1).numpy()
    ours = ReferenceModel(stored).log_probs(tokens)
    assert np.abs(theirs).max() > 3  # far from uniform
    assert np.abs(ours - theirs).max() < 1e-4  # float32 rotary tables
