"""export-hf / import-hf against Hugging Face transformers as the oracle.

Exported models must give tinylm's logits in LlamaForCausalLM (fp32, CPU, within 1e-5) and the
same greedy tokens; import -> export must reproduce every tensor bit for bit; refusals are one
line naming the switch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tinylm.bpe import Tokenizer, train_bpe
from tinylm.nn import ModelConfig, RotaryEmbedding, TransformerLM, generate
from tinylm.train import TrainConfig, export_hf, find_checkpoints, import_hf, save_checkpoint
from tinylm.train.cli.generate import main as generate_main
from tinylm.train.cli.train_lm import main as train_main
from tinylm.train.hf.cli import export_main, import_main
from tinylm.train.hf.convert import check_llama_expressible, interleave_rows, rotate_half_rows
from tinylm.train.hf.files import load_safetensors, save_safetensors

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

EOT = "<|endoftext|>"
# (d_model, num_layers, num_heads, d_ff, context_length, rope_theta, tie_embeddings)
SHAPES = [
    (32, 2, 4, 48, 32, 10000.0, False),
    (32, 2, 4, 48, 32, 10000.0, True),
    (48, 1, 3, 80, 24, 500.0, False),
    (16, 3, 8, 32, 40, 1e6, True),  # head_dim 2: one RoPE pair per head
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, corpus_text) -> Tokenizer:
    path = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    path.write_text(corpus_text[:20_000], encoding="utf-8")
    vocab, merges = train_bpe(path, 300, [EOT], num_workers=1)
    return Tokenizer(vocab, merges, [EOT])


def make_run(root: Path, tokenizer: Tokenizer, seed: int = 0, **model) -> Path:
    """A run directory as train-lm leaves it: config.toml, tokenizer/, checkpoints/step_*.pt.

    Norm gains are randomised too (not all ones), so a wrong key or permutation shows up.
    """
    fields = {"context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4, "d_ff": 48}
    cfg = TrainConfig.from_dict(
        {
            "data": {"vocab_size": len(tokenizer), "special_tokens": [EOT]},
            "model": {**fields, **model},
            "run": {"root": str(root), "name": "run"},
        }
    )
    torch.manual_seed(seed)
    net = TransformerLM(cfg.model)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    run = cfg.run_dir
    (run / "checkpoints").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    tokenizer.save(run / "tokenizer" / "vocab.json", run / "tokenizer" / "merges.txt")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    save_checkpoint(
        net, optimizer, 7, run / "checkpoints" / "step_0000007.pt", config=cfg.to_dict()
    )
    cfg.save(run / "config.toml")
    return run


def tinylm_model(run: Path, checkpoint: str | None = None) -> TransformerLM:
    """The run's newest checkpoint (or the named one) as an eval-mode TransformerLM."""
    from tinylm.train import read_checkpoint

    path = run / "checkpoints" / checkpoint if checkpoint else find_checkpoints(run)[-1]
    payload = read_checkpoint(path)
    net = TransformerLM(TrainConfig.from_dict(payload["config"]).model)
    net.load_state_dict(payload["model"])
    return net.eval()


def hf_model(directory: Path):
    model = transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32)
    return model.eval()


def shape_kwargs(shape) -> dict:
    d, layers, heads, d_ff, ctx, theta, tie = shape
    return dict(
        d_model=d,
        num_layers=layers,
        num_heads=heads,
        d_ff=d_ff,
        context_length=ctx,
        rope_theta=theta,
        tie_embeddings=tie,
    )


@pytest.mark.parametrize("shape", SHAPES, ids=[f"shape{i}" for i in range(len(SHAPES))])
def test_exported_logits_equal_tinylm(shape, tokenizer, tmp_path):
    run = make_run(tmp_path, tokenizer, seed=SHAPES.index(shape), **shape_kwargs(shape))
    out = export_hf(run, tmp_path / "hf")
    ours, theirs = tinylm_model(run), hf_model(out)
    ctx = shape[4]
    ids = torch.randint(0, len(tokenizer), (3, ctx), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = ours(ids), theirs(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert theirs.config.tie_word_embeddings == shape[6]
    stored = safetensors_torch.load_file(out / "model.safetensors")  # the library reads ours
    assert ("lm_head.weight" in stored) == (not shape[6])
    if shape[6]:
        assert theirs.lm_head.weight.data_ptr() == theirs.model.embed_tokens.weight.data_ptr()


def test_greedy_generation_is_identical(tokenizer, tmp_path):
    run = make_run(tmp_path, tokenizer, seed=3, context_length=48)
    out = export_hf(run, tmp_path / "hf")
    ours, theirs = tinylm_model(run), hf_model(out)
    eos = tokenizer.encode(EOT)[0]
    for prompt in ("Once upon a time", "The cat", "A"):
        ids = tokenizer.encode(prompt)
        new = 48 - len(ids)  # stay inside the context: tinylm slides its window beyond it
        expected = generate(ours, ids, new, temperature=0, eos_id=eos).tolist()
        got = theirs.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=False,
            max_new_tokens=new,
            eos_token_id=eos,
            pad_token_id=eos,
        )[0].tolist()
        assert got == expected


def test_exported_tokenizer_gives_our_ids(tokenizer, tmp_path, corpus_text):
    out = export_hf(make_run(tmp_path, tokenizer), tmp_path / "hf")
    text = corpus_text[:5000] + EOT + "it's 123  \n\n héllo" + EOT + EOT
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok(text)["input_ids"] == tokenizer.encode(text)
    assert hf_tok.eos_token == EOT and hf_tok.convert_tokens_to_ids(EOT) == tokenizer.encode(EOT)[0]
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == config["bos_token_id"] == tokenizer.encode(EOT)[0]
    assert Tokenizer.from_files(out / "vocab.json", out / "merges.txt", [EOT]).vocab == (
        tokenizer.vocab
    )


@pytest.mark.parametrize("tie", [False, True])
def test_import_then_export_is_bit_identical(tie, tokenizer, tmp_path):
    first = export_hf(make_run(tmp_path, tokenizer, tie_embeddings=tie), tmp_path / "hf1")
    import_hf(first, tmp_path / "imported")
    second = export_hf(tmp_path / "imported", tmp_path / "hf2")
    a, b = (
        load_safetensors(first / "model.safetensors"),
        load_safetensors(second / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    for name in ("config.json", "tokenizer.json", "vocab.json", "merges.txt"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize(("kv_heads", "tie"), [(4, False), (2, True), (1, False)])
def test_import_a_model_built_by_transformers(kv_heads, tie, tokenizer, tmp_path):
    """A Llama that transformers itself initialised and saved (GQA when kv_heads < heads)."""
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        max_position_embeddings=24,
        rms_norm_eps=1e-5,
        rope_theta=777.0,
        tie_word_embeddings=tie,
        eos_token_id=tokenizer.encode(EOT)[0],
    )
    torch.manual_seed(kv_heads)
    theirs = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0, 0.2) if p.ndim > 1 else p.copy_(1 + 0.3 * torch.randn_like(p))
    theirs.save_pretrained(tmp_path / "hf")
    tokenizer.save_hf(tmp_path / "hf" / "tokenizer.json")
    import_hf(tmp_path / "hf", tmp_path / "run")
    ours = tinylm_model(tmp_path / "run")
    ids = torch.randint(0, len(tokenizer), (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, atol=1e-5, rtol=0)


def test_imported_run_generates_and_fine_tunes(tokenizer, tmp_path, capsys, corpus_text):
    out = export_hf(make_run(tmp_path / "src", tokenizer), tmp_path / "hf")
    run = tmp_path / "runs" / "ft"
    assert import_main([str(out), "--out", str(run)]) == 0
    assert "train-lm" in capsys.readouterr().out
    assert generate_main(["--run", str(run), "--prompt", "The", "--max-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("The")

    resume = ["--run.root", str(run.parent), "--run.name", "ft", "--resume", "--no-progress"]
    small = ["--train.max_steps", "2", "--train.batch_size", "2", "--train.device", "cpu"]
    small += ["--eval.interval", "2", "--eval.iters", "1", "--sample.max_new_tokens", "0"]
    assert train_main(resume + small) == 2  # no data encoded with its tokenizer yet
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "train.npy" in err and err.count("\n") == 1

    ids = np.array(tokenizer.encode(corpus_text[:8000]), dtype=np.uint16)
    (run / "data").mkdir(exist_ok=True)
    np.save(run / "data" / "train.npy", ids[: len(ids) // 2])
    np.save(run / "data" / "val.npy", ids[len(ids) // 2 :])
    assert train_main(resume + small) == 0
    assert find_checkpoints(run)[-1].name == "step_0000002.pt"


@pytest.mark.parametrize(
    ("switch", "value"),
    [("norm", "post"), ("norm", "none"), ("ffn", "silu"), ("position", "none")],
)
def test_export_refuses_what_llama_cannot_express(switch, value, tokenizer, tmp_path, capsys):
    run = make_run(tmp_path, tokenizer, **{switch: value, "d_ff": 64})
    assert export_main(["--run", str(run), "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Llama cannot express model.{switch} = {value!r}")
    assert err.count("\n") == 1
    assert not (tmp_path / "hf").exists()


def test_refusal_table_covers_fields_added_later():
    """Fields a newer tinylm.nn adds (qk_norm, ...) are refused off their plain value; init-only
    ones are not; unknown ones are refused unless at their default."""
    base = dict(vocab_size=300, context_length=8, d_model=8, num_layers=4, num_heads=2, d_ff=8)
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    extra = [
        (name, type(default), default)
        for name, default in [
            ("qk_norm", False),
            ("logit_softcap", 0.0),
            ("value_embeddings", 0),
            ("unet_skips", False),
            ("parameter_free_norm", False),
            ("zero_init_proj", False),
            ("mystery", 0),
        ]
        if name not in names
    ]
    Future = dataclasses.make_dataclass("Future", extra, bases=(ModelConfig,), frozen=True)
    check_llama_expressible(Future(**base))
    check_llama_expressible(Future(**base, zero_init_proj=True))
    for name, value in [
        ("qk_norm", True),
        ("logit_softcap", 30.0),
        ("value_embeddings", 2),
        ("unet_skips", True),
        ("parameter_free_norm", True),
        ("mystery", 1),
    ]:
        with pytest.raises(ValueError, match=f"model.{name} ") as info:
            check_llama_expressible(Future(**base, **{name: value}))
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4}}, "rope_scaling"),
        ({"rms_norm_eps": 1e-6}, "rms_norm_eps"),
        ({"head_dim": 4}, "head_dim"),
        ({"model_type": "mistral"}, "model_type"),
    ],
)
def test_import_refuses_other_llamas(change, field, tokenizer, tmp_path, capsys):
    out = export_hf(make_run(tmp_path, tokenizer), tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **change}))
    assert import_main([str(out), "--out", str(tmp_path / "imp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config.json: ") and field in err and err.count("\n") == 1
    assert not (tmp_path / "imp").exists()


def test_cli_errors(tokenizer, tmp_path, capsys):
    run = make_run(tmp_path, tokenizer)
    assert export_main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert export_main(["--run", str(run), "--out", str(tmp_path / "hf")]) == 0
    assert export_main(["--run", str(run), "--out", str(tmp_path / "hf")]) == 2  # not empty
    assert "--force" in capsys.readouterr().err
    assert export_main(["--run", str(run), "--out", str(tmp_path / "hf"), "--force"]) == 0
    assert import_main([str(tmp_path / "hf"), "--out", str(tmp_path / "imp")]) == 0
    assert import_main([str(tmp_path / "hf"), "--out", str(tmp_path / "imp")]) == 2  # no clobber
    assert "already holds a run" in capsys.readouterr().err
    assert import_main([str(tmp_path / "nope"), "--out", str(tmp_path / "imp2")]) == 2


def test_rope_permutation_matches_rotate_half():
    """Our interleaved RoPE on x equals HF's rotate-half RoPE on the permuted x, permuted."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    heads, d, seq = 3, 8, 5
    x = torch.randn(1, heads, seq, d)
    ours = RotaryEmbedding(10000.0, d, seq)(x, torch.arange(seq))
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, d, 2).float() / d)
    angles = torch.outer(torch.arange(seq).float(), inv_freq)
    cos, sin = (
        torch.cat((angles, angles), -1).cos()[None],
        torch.cat((angles, angles), -1).sin()[None],
    )
    # The permutation acts on rows of a (heads*d, in) weight, i.e. on each head's output features.
    perm = rotate_half_rows(torch.arange(heads * d)[:, None], heads)[:, 0].view(heads, d)
    permuted = torch.stack([x[:, h, :, perm[h] - h * d] for h in range(heads)], dim=1)
    theirs, _ = apply_rotary_pos_emb(permuted, permuted, cos, sin)
    expected = torch.stack([ours[:, h, :, perm[h] - h * d] for h in range(heads)], dim=1)
    torch.testing.assert_close(theirs, expected, atol=1e-6, rtol=1e-6)
    w = torch.randn(heads * d, 7)
    assert torch.equal(interleave_rows(rotate_half_rows(w, heads), heads), w)


def test_safetensors_files_interoperate(tmp_path):
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.randn(5).to(torch.bfloat16),
        "c": torch.arange(6, dtype=torch.int64).view(2, 3),
        "empty": torch.zeros(0, 2),
    }
    save_safetensors(tensors, tmp_path / "ours.safetensors", metadata={"format": "pt"})
    theirs = safetensors_torch.load_file(tmp_path / "ours.safetensors")
    safetensors_torch.save_file(tensors, tmp_path / "lib.safetensors")
    ours = load_safetensors(tmp_path / "lib.safetensors")
    for name, tensor in tensors.items():
        for loaded in (theirs[name], ours[name]):
            assert loaded.dtype == tensor.dtype and torch.equal(loaded, tensor)
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_safetensors(tmp_path / "bad.safetensors")


def test_export_skips_an_unreadable_newest_checkpoint(tokenizer, tmp_path, capsys):
    """Like generate and --resume: a torn newest checkpoint (a crash mid-write) is skipped."""
    run = make_run(tmp_path, tokenizer)
    (run / "checkpoints" / "step_0000009.pt").write_bytes(b"not a checkpoint")
    out = export_hf(run, tmp_path / "hf")
    assert "skipped unreadable step_0000009.pt" in capsys.readouterr().err
    weights = load_safetensors(out / "model.safetensors")
    expected = tinylm_model(run, "step_0000007.pt").state_dict()["lm_head.weight"]
    assert torch.equal(weights["lm_head.weight"], expected)
