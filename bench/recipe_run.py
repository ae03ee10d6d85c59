"""recipe_bench's run and its results: round-robin slices to the budget, untimed evals at
25/50/75/100% of it, then the table and the one-line summary."""

from __future__ import annotations

import math
import time

import numpy as np

from bench.recipe_parts import Batches, Contender

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def run(contenders, batches: Batches, windows, budget, slice_s, sync, log, steps_mode=False):
    """Round-robin time slices until every contender has spent its budget; evals untimed.

    `budget` is seconds of each contender's own compute, or steps when `steps_mode` (--steps:
    equal steps instead of equal time, a low-noise tuning aid on a loaded machine).
    """
    eval_batch = batches.batch
    for c in contenders:  # untimed warm-up (lazy inits, kernel choice); the grads are dropped
        x, _ = batches(0)
        c.logits(x).float().mean().backward()
        c.optimizer.zero_grad(set_to_none=True)
        sync()
    wall0 = time.perf_counter()
    active = list(contenders)
    while active:
        for c in list(active):
            start = c.elapsed
            while c.spent(steps_mode) < budget and (c.elapsed - start < slice_s):
                x, y = batches(c.step)
                c.train_step(x, y, budget, sync, steps_mode)
                for frac in FRACTIONS:
                    if frac not in c.evals and c.spent(steps_mode) >= frac * budget - 1e-9:
                        done = [v for v in c.evals.values() if v[1] == c.step]
                        loss = done[0][0] if done else c.evaluate(windows, eval_batch)
                        c.evals[frac] = (loss, c.step, c.tokens)
                        log(
                            f"  {c.name:>12} {frac:4.0%}  {c.elapsed:7.1f} s  step {c.step:5d}  "
                            f"{c.tokens / c.elapsed:8,.0f} tok/s  val {loss:.4f}  "
                            f"(wall {time.perf_counter() - wall0:6.0f} s)"
                        )
            if c.spent(steps_mode) >= budget:
                active.remove(c)


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def report(contenders: list[Contender], budget: float, unit: str = "s") -> tuple[list[dict], str]:
    rows = []
    for c in contenders:
        rows.append(
            {
                "name": c.name,
                "describe": c.describe,
                "params": c.params,
                "steps": c.step,
                "tokens": c.tokens,
                "seconds": c.elapsed,
                "tokens_per_s": c.tokens / c.elapsed if c.elapsed else float("nan"),
                "val_loss": {f"{int(f * 100)}%": c.evals[f][0] for f in FRACTIONS if f in c.evals},
            }
        )
    by = {r["name"]: r for r in rows}
    peers = [r for r in rows if r["name"].startswith("peer@")]
    final = lambda r: r["val_loss"].get("100%", float("nan"))  # noqa: E731
    best_peer = min(peers, key=final) if peers else None
    l0 = final(best_peer) if best_peer else None
    l1 = final(by["baseline"]) if "baseline" in by else None
    l2 = final(by["modern"]) if "modern" in by else None
    peer_tps = float(np.mean([r["tokens_per_s"] for r in peers])) if peers else None
    d1 = l2 - l1 if l1 is not None and l2 is not None else None
    d2 = l2 - l0 if l0 is not None and l2 is not None else None
    ratio = by["baseline"]["tokens_per_s"] / peer_tps if peer_tps and "baseline" in by else None
    lr = best_peer["name"][5:] if best_peer else "n/a"
    line = (
        f"recipe-bench: peer {fmt(l0)} (lr {lr}), baseline {fmt(l1)}, modern {fmt(l2)} nats at "
        f"{budget:g} {unit}; modern − baseline = {fmt(d1, '+.4f')}; "
        f"modern − peer = {fmt(d2, '+.4f')}; "
        f"baseline tok/s / peer = {fmt(ratio, '.2f')}"
    )
    return rows, line


def print_table(rows: list[dict], out) -> None:
    head = (
        f"{'contender':>12} {'params':>9} {'steps':>6} {'tokens':>11} {'tok/s':>8} "
        + " ".join(f"{'val@' + f'{int(f * 100)}%':>8}" for f in FRACTIONS)
        + "  what"
    )
    print(head, file=out)
    for r in rows:
        losses = " ".join(f"{fmt(r['val_loss'].get(f'{int(f * 100)}%')):>8}" for f in FRACTIONS)
        print(
            f"{r['name']:>12} {r['params'] / 1e6:8.2f}M {r['steps']:6d} {r['tokens']:11,d} "
            f"{r['tokens_per_s']:8,.0f} {losses}  {r['describe']}",
            file=out,
        )
