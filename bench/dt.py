"""DT training throughput inside a Tune trial vs a plain loop, and the share of matmul FLOP/s reached.

    python bench/dt.py [--steps 300] [--threads 1]

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
from torch.nn import functional as F  # noqa: E402

from trainables import metrics as m  # noqa: E402
from trainables.recsys.dt import DecisionTransformer, DecisionTransformerTrainable, DTConfig, flops_per_sequence  # noqa: E402


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


def plain_loop(cfg: DTConfig, n_items: int, steps: int, threads: int) -> float:
    """Sequences/s of the same model and batch shape with nothing around it."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DecisionTransformer(cfg, n_items)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    b, k = cfg.batch_size, cfg.context_length
    returns, states = torch.rand(b, k), torch.rand(b, k, 3)
    actions, timesteps = torch.randint(0, n_items, (b, k)), torch.arange(k).repeat(b, 1)
    for i in range(steps + 20):
        if i == 20:  # warm-up excluded
            start = time.perf_counter()
        hidden, first, _ = model(returns, states, actions, timesteps)
        loss = F.cross_entropy(model.logits(hidden).reshape(-1, n_items), actions[:, first:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    return steps * b / (time.perf_counter() - start)


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
    sequences = config["iterations"] * config["steps_per_iteration"] * DTConfig().batch_size
    # Tune's per-iteration wall time less the model's own evaluation: the loop plus what the actor adds.
    wall = float(frame["time_this_iter_s"].sum() - frame[m.EVAL_SECONDS].sum())
    return {"loop": float(frame[m.TRAIN_SEQUENCES_PER_S].iloc[1:].median()), "wall": sequences / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads = CPUs per trial (default: 1)")
    args = parser.parse_args()
    os.environ.setdefault("TUNELAB_CACHE", tempfile.mkdtemp())

    cfg = DTConfig()
    n_items = cfg.synthetic_items
    iterations = 4
    config = {
        "iterations": iterations,
        "steps_per_iteration": max(1, args.steps // iterations),
        "torch_threads": args.threads,
    }
    peak = matmul_flops(args.threads)
    plain = plain_loop(cfg, n_items, args.steps, args.threads)
    trial = tune_trial(config, args.threads)
    flops = flops_per_sequence(cfg, n_items)
    print(
        f"model: {cfg.layers} layers, width {cfg.width}, K={cfg.context_length}, tokens {cfg.tokens}, "
        f"{n_items} items, batch {cfg.batch_size}; {flops / 1e6:.1f} MFLOP per sequence (fwd+bwd)"
    )
    print(f"matmul peak ({args.threads} thread): {peak / 1e9:.1f} GFLOP/s")
    print(f"plain loop:            {plain:8.1f} sequences/s")
    print(f"tune trial, train loop: {trial['loop']:8.1f} sequences/s")
    print(f"tune trial, wall:      {trial['wall']:8.1f} sequences/s (Tune's per-iteration time less evaluation)")
    overhead = 1.0 - trial["wall"] / plain
    print(f"platform overhead: {100 * overhead:.1f}% (target <= 5%)")
    print(
        f"matmul share: {100 * flops * trial['loop'] / peak:.1f}% of measured peak in the trial, "
        f"{100 * flops * plain / peak:.1f}% in the plain loop (target >= 30%)"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
