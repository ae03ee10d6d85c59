"""`export-hf` / `import-hf`: a tinylm run directory <-> a Hugging Face Llama directory.

export-hf --run runs/default --out hf/default       # LlamaForCausalLM + tokenizer files
import-hf hf/some-llama --out runs/imported         # a run `generate` and `train-lm --resume` use

An exported directory holds config.json, model.safetensors, generation_config.json and the
tokenizer as tokenizer.json (byte-level BPE), vocab.json + merges.txt, special_tokens_map.json and
tokenizer_config.json; `LlamaForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`
load it. An imported run holds config.toml, tokenizer/ and checkpoints/step_0000000.pt: the
weights at step 0 with a fresh optimizer and schedule, so fine-tuning is `train-lm --resume`
(see the README's Interop section for the data it needs).

This module holds the run side of both commands (checkpoint, config.toml, tokenizer/, a step-0
checkpoint) and their entry points; the tinylm <-> Llama mapping is `hf`, the HF directory's
files (safetensors, JSON, tokenizer files) are `hf_files`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import RMSNorm
from tinylm.train.config import TrainConfig, load_config
from tinylm.train.errors import RunFailed, one_line, run_cli
from tinylm.train.files import atomic_directory
from tinylm.train.hf.convert import (
    NOT_ARCHITECTURE,
    check_llama_expressible,
    from_hf_state_dict,
    llama_config_dict,
    model_config_from_llama,
    to_hf_state_dict,
)
from tinylm.train.hf.files import (
    generation_config,
    load_hf_tokenizer,
    load_hf_weights,
    sample_settings,
    save_hf_tokenizer,
    save_safetensors,
    special_ids,
    write_json,
)
from tinylm.train.run.checkpoint import save_checkpoint
from tinylm.train.run.directory import find_checkpoints
from tinylm.train.run.load import load_run
from tinylm.train.trainer.setup import build_model_and_optimizer

__all__ = ["export_hf", "export_main", "import_hf", "import_main"]

HF_FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json")


# -- export ----------------------------------------------------------------------------------


def export_hf(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Write the run's newest (or the given) checkpoint as a HF Llama directory; return it."""
    out_dir = Path(out_dir)
    # Like generate and --resume: a newest checkpoint that does not read back is skipped.
    model, tokenizer, run_config = load_run(run_dir, checkpoint=checkpoint)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ValueError(f"--out {out_dir} is not empty; pass --force to overwrite its files")
    config = run_config.model
    check_llama_expressible(config)
    norms = [m.eps for m in model.modules() if isinstance(m, RMSNorm)]
    tensors = to_hf_state_dict(model.state_dict(), config)
    specials = list(run_config.data.special_tokens)
    eos = special_ids(tokenizer).get(specials[0]) if specials else None

    dtype = str(tensors["model.embed_tokens.weight"].dtype).removeprefix("torch.")
    # Written into a temporary directory beside --out that becomes --out at the end: a failed
    # write (disk full, a kill) leaves --out as it was, and a rerun needs no --force.
    llama = llama_config_dict(
        config, rms_norm_eps=norms[0], bos_token_id=eos, eos_token_id=eos, dtype=dtype
    )
    try:
        with atomic_directory(out_dir, replace_files=force) as tmp:
            write_json(tmp / "config.json", llama)
            save_safetensors(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
            generation = generation_config(run_config.to_dict()["sample"], eos)
            write_json(tmp / "generation_config.json", generation)
            save_hf_tokenizer(tokenizer, specials, config.context_length, tmp)
    except OSError as e:
        untouched = "left as it was" if out_dir.exists() else "not created"
        raise RunFailed(f"could not write {out_dir}: {e.strerror or e}; it was {untouched}") from e
    return out_dir


# -- import ----------------------------------------------------------------------------------


def import_hf(hf_dir: str | Path, run_dir: str | Path) -> Path:
    """Turn a Llama directory into a tinylm run directory; return its step-0 checkpoint."""
    hf_dir, run_dir = Path(hf_dir), Path(run_dir).absolute()
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"no config.json in {hf_dir}")
    if find_checkpoints(run_dir) or (run_dir / "config.toml").exists():
        raise ValueError(f"{run_dir} already holds a run; choose another --out")
    if run_dir.exists() and not (run_dir.is_dir() and not any(run_dir.iterdir())):
        raise ValueError(f"--out {run_dir} exists and is not an empty directory; choose another")
    try:
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{config_path} is not valid JSON ({e})") from None
    eps = RMSNorm(1).eps
    fields, kv_heads = model_config_from_llama(hf_config, rms_norm_eps=eps)
    tokenizer = load_hf_tokenizer(hf_dir)
    if max(tokenizer.vocab) >= fields["vocab_size"]:
        raise ValueError(
            f"{hf_dir}: the tokenizer has id {max(tokenizer.vocab)} but vocab_size is "
            f"{fields['vocab_size']}"
        )
    specials = _eos_first(tokenizer, hf_config.get("eos_token_id"))
    cfg = _imported_config(fields, specials, run_dir, hf_dir)
    state = from_hf_state_dict(load_hf_weights(hf_dir), cfg.model, kv_heads)

    path = run_dir / "checkpoints" / f"step_{0:07d}.pt"
    # Built in a temporary directory beside --out that becomes --out at the end: a failure
    # leaves no half run (checkpoints/ without config.toml) that a rerun would refuse.
    with atomic_directory(run_dir) as tmp:
        # tokenizer/ is what `generate` reads; data/tokenizer/ is data.tokenizer_dir, which
        # train-lm copies over tokenizer/ at start (it cannot copy a directory onto itself).
        for directory in (tmp / "tokenizer", tmp / "data" / "tokenizer"):
            directory.mkdir(parents=True)
            tokenizer.save(directory / "vocab.json", directory / "merges.txt")
        (tmp / "checkpoints").mkdir()
        _save_step0(cfg, state, hf_dir, tmp / "checkpoints" / path.name, path)
        cfg.save(tmp / "config.toml")
    return path


def _save_step0(cfg: TrainConfig, state: dict, hf_dir: Path, tmp_path: Path, path: Path) -> None:
    """A fresh run's model, optimizer and schedule (seeded as train-lm seeds them), then the
    imported weights: the checkpoint train-lm would have written before its first step."""
    python_rng, numpy_rng = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            model, optimizer, schedule = build_model_and_optimizer(
                cfg.model,
                cfg.compute,
                cfg.optim,
                seed=cfg.train.seed,
                max_steps=cfg.train.max_steps,
                device=torch.device("cpu"),
            )
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise ValueError(f"{hf_dir}: weights do not fit: {one_line(e)}") from None
            try:
                save_checkpoint(
                    model,
                    optimizer,
                    0,
                    tmp_path,
                    scheduler=schedule,
                    config=cfg.to_dict(),
                    data={
                        "tokens": 0,
                        "step": 0,
                        "seed": cfg.train.seed,
                        "imported_from": str(hf_dir),
                    },
                    wallclock=0.0,
                )
            except (OSError, RuntimeError) as e:
                cause = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
                if "unexpected pos" in cause:  # torch's words for a write the OS cut short
                    cause = f"the write stopped short, is the disk full? ({cause})"
                raise RunFailed(f"could not write {path}: {cause}; nothing was imported") from None
    finally:
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)


def _eos_first(tokenizer: Tokenizer, eos_id) -> list[str]:
    """Special tokens with the model's eos first: tinylm separates documents with the first."""
    eos_id = eos_id[0] if isinstance(eos_id, list) and eos_id else eos_id
    specials = list(tokenizer.special_tokens)
    ids = special_ids(tokenizer)
    eos = [text for text in specials if ids[text] == eos_id]
    return eos + [text for text in specials if text not in eos]


def _imported_config(fields: dict, specials: list[str], run_dir: Path, hf_dir: Path):
    """The default run config with the imported model, its tokenizer and this run directory.

    The data points at `<run>/data/{train,val}.npy`, which do not exist yet: fine-tuning needs
    data encoded with this tokenizer, and a resume without it fails with one clear line instead
    of training a new tokenizer that does not fit the weights.
    """
    raw = load_config().to_dict()
    kept = {k: v for k, v in raw["model"].items() if k in NOT_ARCHITECTURE}
    raw["model"] = {**kept, **fields}
    raw["data"].update(
        vocab_size=fields["vocab_size"],
        special_tokens=specials,
        tokenizer_dir=str(run_dir / "data" / "tokenizer"),
        train_tokens=str(run_dir / "data" / "train.npy"),
        val_tokens=str(run_dir / "data" / "val.npy"),
    )
    raw["run"].update(root=str(run_dir.parent), name=run_dir.name)
    raw["sample"].update(sample_settings(hf_dir))
    return TrainConfig.from_dict(raw)


# -- command lines ---------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def export_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="export-hf",
        description="Write a tinylm run as a Hugging Face LlamaForCausalLM.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--run", required=True, type=Path, help="run directory (holds checkpoints/)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--checkpoint", type=Path, default=None, help="(default: the run's newest)")
    p.add_argument(
        "--force", action="store_true", help="replace the exported files in a non-empty --out"
    )
    args = p.parse_args(argv)

    def body() -> None:
        out = export_hf(args.run, args.out, checkpoint=args.checkpoint, force=args.force)
        print(f"wrote {', '.join(HF_FILES)} and tokenizer files to {out}")

    return run_cli(body, abort_message="interrupted")


def import_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="import-hf",
        description="Load a Hugging Face Llama directory as a tinylm run.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("hf_dir", type=Path, help="directory with config.json, model.safetensors")
    p.add_argument("--out", required=True, type=Path, help="new run directory")
    args = p.parse_args(argv)

    def body() -> None:
        checkpoint = import_hf(args.hf_dir, args.out)
        print(f"wrote {checkpoint} and {args.out / 'config.toml'}")
        print(f"sample: generate --run {args.out}")
        run, tok = args.out, args.out / "tokenizer"
        print(
            f"fine-tune: bpe-encode --vocab {tok}/vocab.json --merges {tok}/merges.txt "
            f"TEXT {run}/data/train.npy (and val.npy likewise), then train-lm --run.root "
            f"{run.absolute().parent} --run.name {run.name} --resume --train.max_steps N"
        )

    return run_cli(body, abort_message="interrupted")
