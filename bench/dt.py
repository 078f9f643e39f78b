"""DT training throughput inside a Tune trial vs a plain loop, and the share of matmul FLOP/s reached.

Throughput is in training targets (next items predicted) per second; the model is the default DT
(SASRec's encoder reading return, state and item tokens) on the default generated data.

    python bench/dt.py [--batches 100] [--threads 1]

All figures come from this one run on this machine: the plain loop, the Tune trial and the matmul
peak are measured here, with the same torch thread count, so the ratios are comparable.
The last lines printed are the figures recorded in docs/performance.md.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray import tune  # noqa: E402

from trainables import metrics as m  # noqa: E402
from trainables.recsys import sasrec  # noqa: E402
from trainables.recsys.dt import DecisionTransformerTrainable, DTConfig  # noqa: E402
from trainables.runtime import standalone  # noqa: E402


def matmul_flops(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """Best-of sustained fp32 GEMM FLOP/s at `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return best


def flops_per_target(cfg: DTConfig, n_items: int) -> float:
    """Matmul FLOPs per training target of a full window, forward + backward (= 3 x forward)."""
    tokens = cfg.context_length * len(cfg.tokens)
    blocks = cfg.layers * tokens * 2 * 6 * cfg.width**2  # Q, K, V, out projections (4C^2), FFN (2C^2)
    attention = cfg.layers * 2 * 2 * tokens**2 * cfg.width  # scores and weighted sum
    output = 2 * cfg.context_length * cfg.width * n_items  # full softmax over all items per target
    return 3.0 * (blocks + attention + output) / cfg.context_length


def plain_loop(config: dict, batches: int) -> float:
    """Targets/s of the trainable's own batch loss and optimizer step on one epoch's windows, with
    nothing around it (no Tune, no evaluation)."""
    trainable = standalone(DecisionTransformerTrainable, config)
    windows = sasrec.epoch_windows(trainable.split.train, trainable.cfg.context_length, trainable.rng)
    size, targets = trainable.cfg.batch_size, 0
    trainable.model.train()
    for i in range(batches + 5):
        if i == 5:  # warm-up excluded
            start, targets = time.perf_counter(), 0
        at, real, known = (
            torch.as_tensor(a) for a in windows.batch(np.arange(i * size, (i + 1) * size) % len(windows.start))
        )
        loss, n = trainable.batch_loss(at, real, known)
        trainable.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainable.optimizer.step()
        targets += n
    return targets / (time.perf_counter() - start)


def tune_trial(config: dict, threads: int) -> dict:
    """One Tune trial of the real trainable (data, checkpoints every iteration, reporting)."""
    ray.init(address="local", num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            tuner = tune.Tuner(
                tune.with_resources(DecisionTransformerTrainable, {"cpu": threads}),
                param_space=config,
                run_config=tune.RunConfig(
                    storage_path=storage,
                    name="bench",
                    verbose=0,
                    checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
                ),
            )
            result = tuner.fit()[0]
            frame = result.metrics_dataframe
    finally:
        ray.shutdown()
    # Tune's per-iteration wall time less the model's own evaluation: the loop plus what the actor adds.
    wall = float(frame["time_this_iter_s"].sum() - frame[m.EVAL_SECONDS].sum())
    loop = frame[m.TRAIN_SEQUENCES_PER_S]
    targets = float((loop * (frame["time_this_iter_s"] - frame[m.EVAL_SECONDS])).sum())
    return {"loop": float(loop.iloc[1:].median()), "wall": targets / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="batches in the plain loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads = CPUs per trial (default: 1)")
    args = parser.parse_args()
    os.environ.setdefault("TUNELAB_CACHE", tempfile.mkdtemp())

    cfg = DTConfig()
    n_items = cfg.synthetic_items
    config = {"iterations": 3, "patience": 0, "epochs_per_iteration": 1, "torch_threads": args.threads}
    peak = matmul_flops(args.threads)
    plain = plain_loop(config, args.batches)
    trial = tune_trial(config, args.threads)
    flops = flops_per_target(cfg, n_items)
    print(
        f"model: {cfg.layers} layers, width {cfg.width}, K={cfg.context_length}, tokens {cfg.tokens}, "
        f"{n_items} items, batch {cfg.batch_size}; {flops / 1e6:.1f} MFLOP per target (fwd+bwd)"
    )
    print(f"matmul peak ({args.threads} thread): {peak / 1e9:.1f} GFLOP/s")
    print(f"plain loop:            {plain:8.1f} targets/s")
    print(f"tune trial, train loop: {trial['loop']:8.1f} targets/s")
    print(f"tune trial, wall:      {trial['wall']:8.1f} targets/s (Tune's per-iteration time less evaluation)")
    overhead = 1.0 - trial["wall"] / plain
    print(f"platform overhead: {100 * overhead:.1f}% (target <= 5%)")
    print(
        f"matmul share: {100 * flops * trial['loop'] / peak:.1f}% of measured peak in the trial, "
        f"{100 * flops * plain / peak:.1f}% in the plain loop (target >= 30%)"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
