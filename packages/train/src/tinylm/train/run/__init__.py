"""tinylm.train.run: a run directory, its files, and reading them back.

    checkpoint.py save/load with every RNG state; loads refuse pickled code (weights_only)
    directory.py  the layout (checkpoints/step_<n>.pt, ...), the `.lock`, resume checks
    metrics.py    metrics.jsonl (strict JSON, damaged lines skipped), loss.png, unigram baseline
    load.py     `load_run(run_dir)` -> model, tokenizer, config: the one way `generate`,
                `export-hf` and user code load a run; `open_checkpoint` is the reading step
                `train-lm --resume` shares (it then restores optimizer, schedule and RNGs)
    migrate.py  every older checkpoint and config format -> today's, in one place

The public names are re-exported by `tinylm.train`. This `__init__` imports nothing:
`tinylm.train.config` needs `migrate` while `load` needs the config, so importing both here
would make a cycle.
"""

__all__: list[str] = []
