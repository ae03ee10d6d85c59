"""tinylm's benchmarks, each run from the repository root as a module:

    uv run --no-sync python -m bench.nn_bench       tinylm vs HF Llama: training steps, decoding
    uv run --no-sync python -m bench.recipe_bench   modern recipe vs baseline vs HF, equal time
    uv run --no-sync python -m bench.train_bench    the training loop's throughput and overhead
    uv run --no-sync python -m bench.optim_bench    one optimizer step: Muon, AdamW kernels
    uv run --no-sync python -m bench.loss_bench     lm-head + loss kernels: memory and time
    uv run --no-sync python -m bench.bpe_bench      BPE training and encoding vs peers
    uv run --no-sync python -m bench.faults         kills, resumes and torn writes of train-lm
    uv run --no-sync python -m bench.check_tokens_bench   the start-of-run token check, 1 GB
    bash bench/gpu_check.sh                         the prepared GPU check (runs bench.gpu_check)

What they share lives in `bench.harness` (timing, the HF peer, peak FLOP/s, token data prepared
through `tinylm.train`); the nn bench's models and steps in `bench.nn_parts` (also gpu_check's);
recipe_bench's recipes in `bench.recipes`. Like tests/, bench uses the packages only through
their top-level `tinylm.<pkg>` names. This file imports nothing, so that a bench can set
environment switches (e.g. TINYLM_TYPECHECK) before tinylm loads.
"""
