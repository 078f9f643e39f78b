"""Search space for RLlib PPO (trainables/rl/ppo.py), a baseline run through the same CLI."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables import metrics as m
from trainables.rl import ppo
from trainables.rl.rllib import place

# RLlib fixes its config when the algorithm is built: a mutation rebuilds it and restores the
# checkpoint PBT clones (RLlibTrainable.reset_config).
PBT_MUTATIONS = {
    "lr": tune.loguniform(5e-5, 3e-3),
    "entropy_coeff": tune.uniform(0.0, 0.02),
    "clip_param": tune.uniform(0.1, 0.3),
}


def optuna_space(trial) -> dict:
    lr_kind = trial.suggest_categorical("lr_schedule.kind", ["constant", "linear", "cosine"])
    lr_schedule = {"kind": lr_kind, "start": 1.0}
    if lr_kind != "constant":
        lr_schedule["end"] = trial.suggest_float("lr_schedule.end", 0.05, 1.0, log=True)
    entropy_kind = trial.suggest_categorical("entropy_schedule.kind", ["constant", "linear"])
    return {
        "lr": trial.suggest_float("lr", 5e-5, 3e-3, log=True),
        "lr_schedule": lr_schedule,
        "entropy_coeff": trial.suggest_float("entropy_coeff", 1e-4, 0.03, log=True),
        "entropy_schedule": {"kind": entropy_kind, "start": 1.0, **({"end": 0.0} if entropy_kind == "linear" else {})},
        "num_epochs": trial.suggest_int("num_epochs", 2, 15),
        "batch_size": 2 ** trial.suggest_int("log2_batch_size", 5, 9),
        "clip_param": trial.suggest_float("clip_param", 0.1, 0.3),
        "gae_lambda": trial.suggest_float("gae_lambda", 0.9, 1.0),
        "vf_loss_coeff": trial.suggest_float("vf_loss_coeff", 0.001, 1.0, log=True),
        # samples per update and network size: what time to solve turns on (bench/cartpole_search.py)
        "steps_per_iteration": trial.suggest_categorical("steps_per_iteration", [512, 1024, 2048, 4096]),
        "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
    }


SPEC = ModelSpec(
    trainable="trainables.rl.ppo:PPOTrainable",
    config=ppo.RLlibPPOConfig,
    check=ppo.parse,
    description="RLlib PPO baseline (new API stack), env runners sized to the trial's CPUs",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
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
