"""The commands: thin entry points over the package's API (argument parsing, exit statuses).

    train_lm.py      `train-lm`: config + overrides -> `train(config)`
    generate.py      `generate`: `load_run(dir)` -> sampled text
    command_line.py  `--section.key value` overrides of every command

`export-hf` / `import-hf` live with the rest of the Hugging Face code (`tinylm.train.hf.cli`).
"""
