"""The modern recipe in train: [compute]/[optim] config, roles → optimizers, resume, MFU, top_k."""

import json
import tomllib

import pytest
import tomli_w
import torch

import tinylm.train.sampling as sampling_module
from tinylm.nn import TransformerLM
from tinylm.optim import AdamW
from tinylm.train import (
    RunComputeConfig,
    TrainConfig,
    bundled_configs,
    find_checkpoints,
    load_config,
    read_checkpoint,
    sample_text,
    save_checkpoint,
    train,
)
from tinylm.train.cli.generate import build_parser
from tinylm.train.cli.train_lm import main as train_main
from tinylm.train.trainer.setup import build_model_and_optimizer, resume_from

# The recipe's switches and optimizer set at the tiny size (2 layers: one value table fits).
RECIPE = {
    "model": {
        "ffn": "relu2",
        "d_ff": 96,
        "qk_norm": True,
        "logit_softcap": 15.0,
        "zero_init_proj": True,
        "value_embeddings": 1,
        "unet_skips": True,
    },
    "optim": {
        "optimizer": "muon",
        "schedule": "wsd",
        "decay_fraction": 0.4,
        "embedding_lr": 0.1,
        "scalar_lr": 0.02,
        "embedding_betas": [0.8, 0.95],
        "muon_lr": 0.03,
        "momentum_warmup_steps": 6,
    },
}


def _quiet(*args, **kwargs):
    pass


def _modern(base: TrainConfig, name: str = "modern", **sections) -> TrainConfig:
    """The tiny run of conftest with the recipe on, in run directory `name`."""
    raw = base.to_dict()
    for section, values in RECIPE.items():
        raw[section].update(values)
    raw["train"].update(max_steps=14)
    raw["eval"].update(interval=7)
    raw["run"].update(checkpoint_interval=7, name=name)
    raw["sample"].update(max_new_tokens=0)
    for section, values in sections.items():
        raw[section].update(values)
    return TrainConfig.from_dict(raw)


# ---------------------------------------------------------------------------------- config


def test_config_round_trip_with_compute_and_optim(tiny_config, tmp_path):
    cfg = _modern(tiny_config, compute={"attention": "sdpa", "fused_qkv": True})
    assert cfg.optim.embedding_betas == (0.8, 0.95) and cfg.optim.head_lr is None
    text = cfg.to_toml()
    raw = tomllib.loads(text)
    assert raw["compute"]["attention"] == "sdpa" and raw["optim"]["optimizer"] == "muon"
    assert "head_lr" not in raw["optim"]  # None = "same as optim.lr": not written
    cfg.save(tmp_path / "c.toml")
    assert load_config(tmp_path / "c.toml") == cfg
    over = load_config(
        tmp_path / "c.toml",
        {"optim.head_betas": "0.7,0.9", "optim.schedule": "cosine", "compute.loss": "full"},
    )
    assert over.optim.head_betas == (0.7, 0.9) and over.optim.schedule == "cosine"
    assert json.loads(json.dumps(over.to_dict())) == over.to_dict()


def test_old_config_keys_move_to_compute(tmp_path):
    old = load_config().to_dict()
    old["model"].update(attention="naive", fused_qkv=True)  # [model] of a run before the split
    old["train"].update(compile=True, dtype="float32")
    del old["compute"]
    (tmp_path / "old.toml").write_text(tomli_w.dumps(old))
    cfg = load_config(tmp_path / "old.toml")
    assert cfg.compute == RunComputeConfig(
        attention="naive", fused_qkv=True, compile=True, dtype="float32"
    )
    assert cfg.model == load_config().model
    with pytest.raises(ValueError, match=r"'train\.compile' is now 'compute\.compile'"):
        load_config(overrides={"train.compile": "true"})


def test_bundled_configs_by_name():
    assert {"default", "modern"} <= set(bundled_configs())
    modern = load_config("modern")
    assert modern.optim.optimizer == "muon" and modern.optim.schedule == "wsd"
    m = modern.model
    assert m.qk_norm and m.ffn == "relu2" and m.zero_init_proj and m.value_embeddings == 1
    assert m.logit_softcap == 0.0 and not m.unet_skips  # did not pay at this scale (RECIPE.md)
    default = load_config()
    shape = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads")
    assert all(getattr(m, k) == getattr(default.model, k) for k in shape)
    assert modern.train.max_steps == default.train.max_steps
    assert modern.train.batch_size == default.train.batch_size


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optim.optimizer", "sgd"], "error: optim.optimizer must be one of adamw, muon"),
        (["--optim.schedule", "linear"], "error: optim.schedule must be one of cosine, wsd"),
        (["--optim.fit_to_time", "true"], "error: optim.fit_to_time needs a budget"),
        (["--optim.momentum_start", "1"], "error: config key 'optim.momentum_start' must be"),
        (["--optim.decay_fraction", "2"], "error: optim.decay_fraction must be in [0, 1]"),
        (["--config", "modrn"], "error: unknown config 'modrn'; did you mean 'modern'?"),
        (["--train.compile", "true"], "error: config key 'train.compile' is now"),
    ],
)
def test_bad_combinations_exit_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_main([*args, "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    if "modrn" in args:
        assert "bundled configs: " in err and "default" in err and "modern" in err


# ---------------------------------------------------------------------------------- roles


def _build(cfg):
    return build_model_and_optimizer(
        cfg.model,
        cfg.compute,
        cfg.optim,
        seed=cfg.train.seed,
        max_steps=cfg.train.max_steps,
        device=torch.device("cpu"),
    )


def test_muon_gets_exactly_the_matrix_role(tiny_config):
    cfg = _modern(tiny_config)
    model, optimizer, _ = _build(cfg)
    roles = model.parameter_groups()
    muon = [p for g in optimizer["muon"].param_groups for p in g["params"]]
    assert [id(p) for p in muon] == [id(p) for p in roles["matrix"]]
    adamw = {g["role"]: g for g in optimizer["adamw"].param_groups}
    assert set(adamw) == {"embedding", "head", "scalar"}
    for role in adamw:
        assert [id(p) for p in adamw[role]["params"]] == [id(p) for p in roles[role]]
    assert adamw["embedding"]["base_lr"] == 0.1 and adamw["embedding"]["betas"] == (0.8, 0.95)
    assert adamw["head"]["base_lr"] == cfg.optim.lr and adamw["scalar"]["weight_decay"] == 0.0
    assert optimizer["muon"].param_groups[0]["momentum"] == cfg.optim.momentum_start  # warmup


def test_default_adamw_roles_decay_like_the_ndim_split(tiny_config):
    """adamw: matrices and embeddings decayed, gains not: the split the default run always had."""
    _, optimizer, _ = _build(tiny_config)
    assert list(optimizer) == ["adamw"]
    for group in optimizer.param_groups:
        expected = tiny_config.optim.weight_decay if group["params"][0].ndim >= 2 else 0.0
        assert all((p.ndim >= 2) == (expected > 0) for p in group["params"])
        assert group["weight_decay"] == expected


# ---------------------------------------------------------------------------------- resume


def _state(run_dir):
    return read_checkpoint(find_checkpoints(run_dir)[-1])


def test_muon_wsd_stop_and_resume_is_bit_exact(tiny_config):
    full = _modern(tiny_config, "full")
    train(full, progress=False, log=_quiet)
    parts = _modern(tiny_config, "parts")
    assert train(parts, stop_at=5, progress=False, log=_quiet).stopped == "stop_at"
    resumed = train(parts, resume=True, progress=False, log=_quiet)
    assert resumed.step == 14
    a, b = _state(full.run_dir), _state(parts.run_dir)
    assert set(a["optimizer"]) == {"muon", "adamw"}
    assert a["scheduler"]["kind"] == "wsd" and a["scheduler"]["t"] == 14
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for member in ("muon", "adamw"):
        sa, sb = a["optimizer"][member]["state"], b["optimizer"][member]["state"]
        for i in sa:
            for name, value in sa[i].items():
                assert torch.equal(value, sb[i][name]), (member, i, name)
    log_a = [json.loads(x) for x in (full.run_dir / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (parts.run_dir / "metrics.jsonl").read_text().splitlines()]
    lr_keys = ("lr", "lr_matrix", "lr_embedding", "lr_head", "lr_scalar", "momentum")
    final_a = {k: log_a[-1][k] for k in lr_keys}
    assert final_a == {k: log_b[-1][k] for k in lr_keys}
    assert log_a[-1]["lr_embedding"] == pytest.approx(0.1 * full.optim.min_lr_ratio)


def test_resume_may_change_compute_but_not_model(tiny_config):
    cfg = _modern(tiny_config, train={"max_steps": 4})
    train(cfg.replace(train={"max_steps": 2}), progress=False, log=_quiet)
    other_kernels = cfg.replace(compute={"attention": "sdpa", "fused_qkv": True})
    assert train(other_kernels, resume=True, progress=False, log=_quiet).step == 4
    with pytest.raises(ValueError, match=r"different \[model\] config"):
        train(cfg.replace(model={"qk_norm": False}), resume=True, progress=False, log=_quiet)
    with pytest.raises(ValueError, match=r"was trained with optim\.optimizer = 'muon'"):
        train(
            cfg.replace(optim={"optimizer": "adamw"}),  # Muon-only keys are simply unused
            resume=True,
            progress=False,
            log=_quiet,
        )


def test_old_single_adamw_checkpoint_resumes(tiny_config):
    """A checkpoint from before parameter roles: one AdamW over (decay: ndim ≥ 2, no decay)
    groups, a CosineSchedule's state, and [model] with attention/[train] with compile."""
    cfg = tiny_config
    torch.manual_seed(0)
    model = TransformerLM(cfg.model)
    params = list(model.parameters())
    old_groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    old_opt = AdamW(old_groups, lr=1e-3)
    for p in params:
        p.grad = torch.randn_like(p)
    old_opt.step()
    old_config = cfg.to_dict()
    old_config["model"]["attention"] = "naive"
    old_config["train"]["compile"] = False
    del old_config["compute"]
    (cfg.run_dir / "checkpoints").mkdir(parents=True)
    save_checkpoint(
        model,
        old_opt,
        3,
        cfg.run_dir / "checkpoints" / "step_0000003.pt",
        scheduler={
            "t": 3,
            "max_lr": 1e-2,
            "min_lr": 1e-3,
            "warmup_iters": 5,
            "cosine_cycle_iters": 30,
        },
        config=old_config,
    )
    fresh, optimizer, schedule = _build(cfg)
    point = resume_from(
        cfg.run_dir, cfg.model, cfg.optim, cfg.train.max_steps, fresh, optimizer, schedule
    )
    assert point.step == 3 and schedule.t == 3
    fresh_params = list(fresh.parameters())
    assert len(optimizer.param_groups) == 4  # the roles, not the old two groups
    for group in optimizer.param_groups:
        assert group["base_lr"] == cfg.optim.lr  # hyperparameters from the config
        for p in group["params"]:
            i = next(j for j, q in enumerate(fresh_params) if q is p)
            assert torch.equal(p, params[i])
            for name in ("exp_avg", "exp_avg_sq"):  # each moment followed its parameter
                assert torch.equal(
                    optimizer["adamw"].state[p][name], old_opt.state[params[i]][name]
                )


# ---------------------------------------------------------------------------------- MFU, top_k


def test_mfu_in_metrics_from_configured_peak(tiny_config):
    cfg = tiny_config.replace(train={"max_steps": 10, "peak_flops": 1e9})
    train(cfg, progress=False, log=_quiet)
    from tinylm.nn import model_stats

    per_token = model_stats(cfg.model).train_flops_per_token
    for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        assert r["flops_per_s"] == pytest.approx(r["tokens_per_s"] * per_token, rel=1e-3)
        assert r["mfu"] == pytest.approx(r["flops_per_s"] / 1e9, rel=1e-3, abs=1e-5)
        assert r["mfu"] > 0


def test_fit_to_time_follows_the_budget_fraction(tiny_config):
    """With a budget far larger than the run, the WSD decay never starts: lr stays at its peak
    after warmup (the step-based schedule would have decayed to its floor at step 14)."""
    cfg = _modern(tiny_config, optim={"fit_to_time": True}, train={"max_seconds": 1e6})
    train(cfg, progress=False, log=_quiet)
    last = json.loads((cfg.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 14 and last["lr_matrix"] == cfg.optim.muon_lr
    assert read_checkpoint(find_checkpoints(cfg.run_dir)[-1])["scheduler"]["progress"] < 1e-3


def test_config_modern_runs_from_the_command_line(tiny_config, capsys):
    args = ["--config", "modern", "--no-progress", "--device", "cpu"]
    tiny = tiny_config.to_dict()
    for section in ("data", "train", "run", "eval"):
        for key, value in tiny[section].items():
            if section != "data" or key in ("text", "text_bytes", "vocab_size", "num_workers"):
                args += [f"--{section}.{key}", str(value)]
    args += ["--model.context_length", "32", "--model.d_model", "32", "--model.num_heads", "2"]
    args += ["--model.d_ff", "96", "--train.max_steps", "4", "--sample.max_new_tokens", "4"]
    args += ["--optim.momentum_warmup_steps", "2", "--optim.warmup_steps", "2"]
    assert train_main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "optimizer: muon + wsd schedule (matrix Muon lr" in out and "done: step 4" in out
    saved = load_config(tiny_config.run_dir / "config.toml")
    assert saved.optim.optimizer == "muon" and saved.model.qk_norm


def test_top_k_zero_reaches_generate_as_off(monkeypatch, tiny_config):
    calls = []

    def fake_generate(model, prompt, n, *, temperature, top_p, eos_id, generator, top_k, compile):
        calls.append(top_k)
        return torch.as_tensor(prompt)

    class Tok:
        def encode(self, text):
            return [1, 2]

        def decode(self, ids):
            return "x" * len(ids)

    model = TransformerLM(tiny_config.model)
    monkeypatch.setattr(sampling_module, "generate", fake_generate)
    sample_text(model, Tok(), "hi", 3, top_k=5)
    sample_text(model, Tok(), "hi", 3)
    assert calls == [5, None]
    assert build_parser().parse_args(["--run", "r", "--top-k", "7"]).top_k == 7
    assert load_config(overrides={"sample.top_k": "40"}).sample.top_k == 40


def test_top_k_reaches_tinylm_generate(tiny_config):
    """With the real sampler: top_k = 1 keeps only the argmax, so sampling is greedy."""

    class Tok:
        def encode(self, text):
            return [3, 4, 5] if text else [7, 7]

        def decode(self, ids):
            return ",".join(map(str, ids))

    torch.manual_seed(0)
    model = TransformerLM(tiny_config.model)
    greedy = sample_text(model, Tok(), "x", 12, temperature=0.0)
    top1 = {sample_text(model, Tok(), "x", 12, temperature=1.5, top_k=1, seed=s) for s in range(3)}
    free = {
        sample_text(model, Tok(), "x", 12, temperature=1.5, top_p=1.0, seed=s) for s in range(3)
    }
    assert top1 == {greedy} and len(free) > 1


def test_default_run_is_the_pre_roles_trainer(tiny_config):
    """adamw + cosine through the optimizer set and LRSchedule = the trainer before parameter
    roles, written out here: one AdamW over (ndim ≥ 2: decay, else none) groups, CosineSchedule,
    cross_entropy on the logits. Same batches, same seed: identical weights."""
    from tinylm.nn import cross_entropy
    from tinylm.optim import CosineSchedule, clip_grad_norm
    from tinylm.train import get_batch, open_tokens, prepare_data
    from tinylm.train.trainer.evaluate import batch_generator

    cfg = tiny_config.replace(
        train={"max_steps": 9}, eval={"interval": 9}, run={"checkpoint_interval": 9}
    )
    result = train(cfg, progress=False, log=_quiet)
    o, t = cfg.optim, cfg.train
    data = prepare_data(cfg.data, cfg.run_dir.parent / "_data", log=_quiet)
    tokens = open_tokens(data.train_path)
    torch.manual_seed(t.seed)
    model = TransformerLM(cfg.model, cfg.compute)
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": o.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    opt = AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    schedule = CosineSchedule(opt, o.lr, o.min_lr, o.warmup_steps, t.max_steps)
    for step in range(t.max_steps):  # 5 warmup steps, then the cosine
        x, y = get_batch(tokens, t.batch_size, cfg.model.context_length, "cpu",
                         batch_generator(t.seed, step, 0))  # fmt: skip
        cross_entropy(model(x), y).backward()
        clip_grad_norm(model.parameters(), o.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        schedule.step()
    for (name, mine), theirs in zip(result.model.named_parameters(), params, strict=True):
        assert torch.equal(mine, theirs), name
