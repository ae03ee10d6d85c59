"""tinylm.train.run: what a run directory holds, read back.

    load.py     `load_run(run_dir)` -> model, tokenizer, config: the one way `generate`,
                `export-hf` and user code load a run; `open_checkpoint` is the reading step
                `train-lm --resume` shares (it then restores optimizer, schedule and RNGs)
    migrate.py  every older checkpoint and config format -> today's, in one place

The public names are re-exported by `tinylm.train`. This `__init__` imports nothing:
`tinylm.train.config` needs `migrate` while `load` needs the config, so importing both here
would make a cycle.
"""

__all__: list[str] = []
