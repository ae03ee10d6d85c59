"""tinylm.train: batches, checkpoints, run configs and the `train-lm` training loop.

config = load_config(overrides={"train.max_steps": 200})   # default.toml + overrides
config = load_config("modern")                             # a bundled config by name
# a config file may say `base = "default"` and hold only what differs (config/load.py)
result = train(config)                                     # -> RunResult (losses, paths, model)
result = Trainer(config).fit()                             # the same, without lock or signals
model, tokenizer, config = load_run("runs/default")        # a run's newest checkpoint, any age
x, y = get_batch(np.load("train.npy", mmap_mode="r"), 16, 128, "cpu")
save_checkpoint(model, optimizer, step, "ckpt.pt", scheduler=schedule)
step = load_checkpoint("ckpt.pt", model, optimizer, scheduler=schedule)
"""

from tinylm.train.cli.command_line import split_command_line
from tinylm.train.config import (
    DataConfig,
    EvalConfig,
    LoopConfig,
    OptimConfig,
    RunComputeConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
    apply_overrides,
    bundled_configs,
    coerce_value,
    default_config_path,
    load_config,
    merge_configs,
    parse_value,
    read_config,
    validate_config,
)
from tinylm.train.data import (
    PreparedData,
    bundled_corpus,
    check_tokens,
    file_fingerprint,
    get_batch,
    load_tokenizer,
    open_tokens,
    prepare_data,
    prepare_text_files,
)
from tinylm.train.errors import RunFailed, RunInterrupted, run_cli
from tinylm.train.files import atomic_open, atomic_write
from tinylm.train.flops import GPU_PEAK_FLOPS, peak_flops
from tinylm.train.hf import export_hf, import_hf
from tinylm.train.hf.convert import llama_config_dict
from tinylm.train.run.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from tinylm.train.run.directory import (
    RunLock,
    check_resume,
    checkpoint_path,
    checkpoint_step,
    find_checkpoints,
    prepare_run_dir,
)
from tinylm.train.run.load import LoadedRun, load_run
from tinylm.train.run.metrics import MetricsLog, plot_losses, unigram_entropy
from tinylm.train.runtime import resolve_device
from tinylm.train.sampling import sample_text, write_sample
from tinylm.train.trainer import RunResult, Trainer, TrainingDiverged, train

__all__ = [
    "GPU_PEAK_FLOPS",
    "DataConfig",
    "EvalConfig",
    "LoadedRun",
    "LoopConfig",
    "MetricsLog",
    "OptimConfig",
    "PreparedData",
    "RunComputeConfig",
    "RunConfig",
    "RunFailed",
    "RunInterrupted",
    "RunLock",
    "RunResult",
    "SampleConfig",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "apply_overrides",
    "atomic_open",
    "atomic_write",
    "bundled_configs",
    "bundled_corpus",
    "capture_rng_state",
    "check_resume",
    "check_tokens",
    "checkpoint_path",
    "checkpoint_step",
    "coerce_value",
    "default_config_path",
    "export_hf",
    "file_fingerprint",
    "find_checkpoints",
    "get_batch",
    "import_hf",
    "llama_config_dict",
    "load_checkpoint",
    "load_config",
    "load_run",
    "load_tokenizer",
    "merge_configs",
    "open_tokens",
    "parse_value",
    "peak_flops",
    "plot_losses",
    "prepare_data",
    "prepare_run_dir",
    "prepare_text_files",
    "read_checkpoint",
    "read_config",
    "resolve_device",
    "restore_rng_state",
    "run_cli",
    "sample_text",
    "save_checkpoint",
    "split_command_line",
    "train",
    "unigram_entropy",
    "validate_config",
    "write_sample",
]
