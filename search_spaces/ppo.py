"""Search space for RLlib PPO (trainables/rl/ppo.py), a baseline run through the same CLI."""

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables import metrics as m
from trainables.rl import ppo
from trainables.rl.rllib import place


def layout(draw) -> dict:
    lr_kind = draw("lr_schedule.kind")
    lr_schedule = {"kind": lr_kind, "start": 1.0}
    if lr_kind != "constant":
        lr_schedule["end"] = draw("lr_schedule.end")
    entropy_kind = draw("entropy_schedule.kind")
    return {
        "lr": draw("lr"),
        "lr_schedule": lr_schedule,
        "entropy_coeff": draw("entropy_coeff"),
        "entropy_schedule": {"kind": entropy_kind, "start": 1.0, **({"end": 0.0} if entropy_kind == "linear" else {})},
        "num_epochs": draw("num_epochs"),
        "batch_size": 2 ** draw("log2_batch_size"),
        "clip_param": draw("clip_param"),
        "gae_lambda": draw("gae_lambda"),
        "vf_loss_coeff": draw("vf_loss_coeff"),
        "steps_per_iteration": draw("steps_per_iteration"),
        "hidden": draw("hidden"),
    }


SPACE = Space(
    dimensions={
        # RLlib fixes its config when the algorithm is built: a mutation rebuilds it and restores the
        # checkpoint PBT clones (RLlibTrainable.reset_config).
        "lr": Float(5e-5, 3e-3, log=True),
        "entropy_coeff": Float(0.0, 0.02),
        "clip_param": Float(0.1, 0.3),
        # Optuna and random search only.
        "lr_schedule.kind": Choice(("constant", "linear", "cosine")),
        "lr_schedule.end": Float(0.05, 1.0, log=True),
        "entropy_schedule.kind": Choice(("constant", "linear")),
        "num_epochs": Int(2, 15),
        "log2_batch_size": Int(5, 9),
        "gae_lambda": Float(0.9, 1.0),
        "vf_loss_coeff": Float(0.001, 1.0, log=True),
        # samples per update and network size: what time to solve turns on (bench/cartpole_search.py)
        "steps_per_iteration": Choice((512, 1024, 2048, 4096)),
        "hidden": Choice((32, 64, 128)),
    },
    pbt=("lr", "entropy_coeff", "clip_param"),
    layout=layout,
)


SPEC = ModelSpec(
    trainable="trainables.rl.ppo:PPOTrainable",
    config=ppo.RLlibPPOConfig,
    check=ppo.parse,
    description="RLlib PPO baseline (new API stack), env runners sized to the trial's CPUs",
    space=SPACE,
    budgets={
        "smoke": Budget(
            samples=2,
            overrides={
                "iterations": 2,
                "steps_per_iteration": 256,
                "batch_size": 64,
                "num_epochs": 1,
                "num_envs": 2,
                "eval_episodes": 3,
            },
            perturbation_interval=1,
        ),
        "full": Budget(samples=4, overrides={}, perturbation_interval=5, grace_period=5),
    },
    seed_metrics=(m.SOLVE_ENV_STEPS, m.SOLVE_SECONDS),
    place=place,
)
