"""OptimizerSet and build_optimizers: roles → optimizers, stepping as one, bit-exact resume."""

import io
import json
import tomllib

import pytest
import tomli_w
import torch

from tinylm.optim import (
    OPTIMIZER_KINDS,
    AdamW,
    LRSchedule,
    Muon,
    OptimizerHParams,
    OptimizerSet,
    build_optimizers,
    clip_grad_norm,
)


class TinyLM(torch.nn.Module):
    """Enough of a language model to have all four roles (head untied unless `tied`)."""

    def __init__(self, vocab=11, d=8, tied=False):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.blocks = torch.nn.ModuleList(
            [torch.nn.Linear(d, 2 * d, bias=False), torch.nn.Linear(2 * d, d, bias=False)]
        )
        self.gain = torch.nn.Parameter(torch.ones(d))
        self.head = None if tied else torch.nn.Linear(d, vocab, bias=False)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.blocks[1](torch.relu(self.blocks[0](h)))
        h = h * self.gain
        return h @ self.embed.weight.T if self.head is None else self.head(h)

    def roles(self):
        return {
            "matrix": [b.weight for b in self.blocks],
            "embedding": [self.embed.weight],
            "head": [] if self.head is None else [self.head.weight],
            "scalar": [self.gain],
        }


HP = OptimizerHParams(
    adamw_lr=3e-3,
    muon_lr=0.05,
    embedding_lr=0.01,
    head_lr=2e-3,
    scalar_lr=0.02,
    betas=(0.8, 0.95),
    head_betas=(0.9, 0.99),
    weight_decay=0.1,
    embedding_weight_decay=0.0,
    muon_momentum=0.9,
    ns_steps=4,
    muon_weight_decay=0.01,
)


def _train(model, opts, sched, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, 11, (4, 6), generator=gen)
        y = torch.randint(0, 11, (4, 6), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opts.step()
        opts.zero_grad(set_to_none=True)
        sched.step()


def test_muon_kind_builds_muon_for_matrices_and_adamw_for_the_rest():
    model = TinyLM()
    opts = build_optimizers(model.roles(), "muon", HP)
    assert list(opts) == ["muon", "adamw"]
    assert isinstance(opts["muon"], Muon) and isinstance(opts["adamw"], AdamW)
    groups = {g["role"]: g for g in opts.param_groups}
    assert list(groups) == ["matrix", "embedding", "head", "scalar"]
    assert groups["matrix"]["params"] == list(model.roles()["matrix"])
    m = groups["matrix"]
    assert (m["lr"], m["momentum"], m["nesterov"], m["ns_steps"], m["weight_decay"]) == (
        0.05,
        0.9,
        True,
        4,
        0.01,
    )
    assert (groups["embedding"]["lr"], groups["embedding"]["weight_decay"]) == (0.01, 0.0)
    assert groups["embedding"]["betas"] == (0.8, 0.95)  # falls back to the shared betas
    assert (groups["head"]["lr"], groups["head"]["betas"]) == (2e-3, (0.9, 0.99))
    assert groups["head"]["weight_decay"] == 0.1  # falls back to weight_decay
    assert (groups["scalar"]["lr"], groups["scalar"]["weight_decay"]) == (0.02, 0.0)
    assert all(g["eps"] == HP.eps for g in opts["adamw"].param_groups)
    assert opts.lr_by_role() == {"matrix": 0.05, "embedding": 0.01, "head": 2e-3, "scalar": 0.02}


def test_adamw_kind_and_defaults():
    model = TinyLM(tied=True)  # empty "head" role: skipped, no empty group
    opts = build_optimizers(model.roles(), "adamw")
    assert list(opts) == ["adamw"] and len(opts) == 1
    hp = OptimizerHParams()
    roles = [(g["role"], g["lr"], g["weight_decay"]) for g in opts.param_groups]
    assert roles == [
        ("matrix", hp.adamw_lr, hp.weight_decay),
        ("embedding", hp.adamw_lr, hp.weight_decay),
        ("scalar", hp.adamw_lr, 0.0),
    ]
    covered = [p for g in opts.param_groups for p in g["params"]]
    assert sorted(map(id, covered)) == sorted(map(id, model.parameters()))


def test_unknown_kind_or_role_is_one_clear_line():
    with pytest.raises(
        ValueError, match=r"^unknown optimizer kind 'sgd'; valid kinds: adamw, muon$"
    ):
        build_optimizers(TinyLM().roles(), "sgd")
    assert set(OPTIMIZER_KINDS) == {"adamw", "muon"}
    with pytest.raises(ValueError, match="valid roles: matrix, embedding, head, scalar"):
        build_optimizers({"matrices": [torch.nn.Parameter(torch.zeros(2, 2))]}, "adamw")
    with pytest.raises(ValueError, match=r"shape \(8,\)"):  # a vector in the matrix role
        build_optimizers({"matrix": [torch.nn.Parameter(torch.zeros(8))]}, "muon")


def test_frozen_parameters_are_left_out():
    model = TinyLM()
    model.gain.requires_grad_(False)
    opts = build_optimizers(model.roles(), "muon")
    assert [g["role"] for g in opts.param_groups] == ["matrix", "embedding", "head"]


def test_set_steps_like_its_members_stepped_by_hand():
    a, b = TinyLM(), TinyLM()
    b.load_state_dict(a.state_dict())
    opts = build_optimizers(a.roles(), "muon", HP)
    r = b.roles()
    muon = Muon(r["matrix"], lr=0.05, momentum=0.9, ns_steps=4, weight_decay=0.01)
    adamw = AdamW(
        [
            {"params": r["embedding"], "lr": 0.01, "betas": (0.8, 0.95), "weight_decay": 0.0},
            {"params": r["head"], "lr": 2e-3, "betas": (0.9, 0.99), "weight_decay": 0.1},
            {"params": r["scalar"], "lr": 0.02, "betas": (0.8, 0.95), "weight_decay": 0.0},
        ]
    )
    x = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        a(x).square().mean().backward()
        b(x).square().mean().backward()
        opts.step()
        muon.step()
        adamw.step()
        opts.zero_grad()
        muon.zero_grad()
        adamw.zero_grad()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
        assert p.grad is None


def test_param_groups_are_the_members_groups():
    opts = build_optimizers(TinyLM().roles(), "muon")
    opts.param_groups[0]["lr"] = 123.0
    assert opts["muon"].param_groups[0]["lr"] == 123.0
    assert dict(opts.members) == {"muon": opts["muon"], "adamw": opts["adamw"]}


def test_closure_is_called_once():
    model = TinyLM()
    opts = build_optimizers(model.roles(), "muon")
    calls = []

    def closure():
        calls.append(1)
        loss = model(torch.zeros(2, 3, dtype=torch.long)).sum()
        loss.backward()
        return loss

    assert opts.step(closure) is not None and len(calls) == 1


def test_checkpoint_resume_is_bit_exact_with_muon_and_adamw():
    """Kill after 6 of 14 steps, resume from torch.load(weights_only=True): identical weights."""

    def fresh():
        torch.manual_seed(0)
        model = TinyLM()
        opts = build_optimizers(model.roles(), "muon", HP)
        sched = LRSchedule(
            opts, "wsd", total_iters=14, warmup_iters=3, decay_fraction=0.5,
            momentum_warmup_iters=8,
        )  # fmt: skip
        return model, opts, sched

    ref_model, ref_opts, ref_sched = fresh()
    _train(ref_model, ref_opts, ref_sched, 6, seed=1)
    _train(ref_model, ref_opts, ref_sched, 8, seed=2)

    model, opts, sched = fresh()
    _train(model, opts, sched, 6, seed=1)
    buf = io.BytesIO()
    state = {"model": model.state_dict(), "opt": opts.state_dict(), "sched": sched.state_dict()}
    torch.save(state, buf)
    del model, opts, sched
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert set(saved["opt"]) == {"muon", "adamw"}
    model, opts, sched = fresh()
    model.load_state_dict(saved["model"])
    opts.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    _train(model, opts, sched, 8, seed=2)

    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(p, q), name
    for member in ("muon", "adamw"):
        for p, q in zip(opts[member].state.values(), ref_opts[member].state.values(), strict=True):
            assert all(torch.equal(p[k], q[k]) for k in p)


def test_load_rejects_other_members():
    opts = build_optimizers(TinyLM().roles(), "muon")
    other = build_optimizers(TinyLM().roles(), "adamw")
    with pytest.raises(ValueError, match="members"):
        opts.load_state_dict(other.state_dict())


def test_a_parameter_belongs_to_one_member():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="another member"):
        OptimizerSet({"a": AdamW([p]), "b": Muon([p])})
    with pytest.raises(ValueError, match="at least one"):
        OptimizerSet({})


def test_hparams_round_trip_json_and_toml():
    for hp in (OptimizerHParams(), HP):
        assert OptimizerHParams.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp
        assert OptimizerHParams.from_dict(tomllib.loads(tomli_w.dumps(hp.to_dict()))) == hp
    with pytest.raises(ValueError, match="unknown optimizer hparams"):
        OptimizerHParams.from_dict({"lr": 1.0})
    with pytest.raises(ValueError, match="two numbers"):
        OptimizerHParams(betas=(0.9,))
    assert OptimizerHParams(betas=[0.9, 0.99]).betas == (0.9, 0.99)
