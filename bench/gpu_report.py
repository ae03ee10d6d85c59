"""gpu_check.md: the report's tables (training tokens/s and MFU, decoding, the loss check)."""

from __future__ import annotations

TARGETS = {"train_vs_hf": 1.2, "decode_vs_hf": 3.0}


def _cell(r, key, peak) -> str:
    if r is None or r.get("status") != "ok":
        return r.get("status", "-") if r else "-"
    if key == "tps":
        return f"{r['tokens_per_s']:,.0f}"
    return f"{r['tokens_per_s'] * r['flops_per_token'] / peak:.1%}"


def _by(rows, *keys) -> dict:
    """Rows grouped by `keys`, then by impl ("tinylm", "hf", "ratio")."""
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), {})[r["impl"]] = r
    return out


def _train_lines(report: dict) -> list[str]:
    peak = report["peak_flops"]
    lines = [
        "| training (fwd+bwd+AdamW) | batch | tinylm tok/s | tinylm MFU | HF tok/s | "
        "HF MFU | tinylm/HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (shape, batch), d in _by(report["train"], "shape", "batch").items():
        t, h, ratio = d.get("tinylm"), d.get("hf"), d.get("ratio")
        last = f"{ratio['ratio']:.2f}x" if ratio else "-"
        lines.append(
            f"| {shape} | {batch} | {_cell(t, 'tps', peak)} | {_cell(t, 'mfu', peak)} | "
            f"{_cell(h, 'tps', peak)} | {_cell(h, 'mfu', peak)} | {last} |"
        )
    return lines


def _decode_lines(report: dict) -> list[str]:
    lines = [
        "| decoding, batch 1, greedy | tinylm tok/s | HF generate (static) tok/s | tinylm/HF |",
        "|---|---:|---:|---:|",
    ]
    for (shape,), d in _by(report["decode"], "shape").items():
        t, h, ratio = d.get("tinylm"), d.get("hf"), d.get("ratio")
        last = f"{ratio['ratio']:.2f}x" if ratio else "-"
        lines.append(f"| {shape} | {_cell(t, 'tps', 0)} | {_cell(h, 'tps', 0)} | {last} |")
    return lines


def _loss_line(lc: dict) -> str:
    if lc.get("status") != "ok":
        return f"loss check: {lc.get('status')}"
    return (
        f"loss after {lc['steps']} steps: fp32 {lc['loss_fp32']:.4f}, bf16 "
        f"{lc['loss_bf16']:.4f}, |diff| {lc['abs_diff']:.4f} (tolerance "
        f"{lc['tolerance']}): {'PASS' if lc['passed'] else 'FAIL'}"
    )


def markdown(report: dict) -> str:
    lines = [
        f"# gpu_check: {report['device_name']}",
        "",
        f"torch {report['torch']}; tiny={report['tiny']}; {report['peak']}; "
        f"{report['elapsed_s']:.0f} s",
        "",
        f"pytest -m gpu: {report['pytest'].get('status')} {report['pytest'].get('summary', '')}",
        "",
        *_train_lines(report),
        "",
        *_decode_lines(report),
        "",
        _loss_line(report["loss_check"]),
        "",
        f"targets: training >= {TARGETS['train_vs_hf']}x HF compiled; decoding >= "
        f"{TARGETS['decode_vs_hf']}x HF generate (static cache)",
    ]
    return "\n".join(lines) + "\n"
