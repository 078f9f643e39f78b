"""Search space for RLlib PPO (trainables/ppo.py), a baseline run through the same CLI."""

from ray import tune

from search_spaces import Budget
from trainables import metrics as m
from trainables.ppo import PPOSettings
from trainables.rllib import check as check_settings
from trainables.rllib import place  # noqa: F401  (env runners sized to the trial's CPUs)

TRAINABLE = "trainables.ppo:PPOTrainable"
CONFIG = PPOSettings
METRIC, MODE = m.SCORE, m.MODE
DESCRIPTION = "RLlib PPO baseline (new API stack), env runners sized to the trial's CPUs"
SEED_METRICS = (m.SOLVE_ENV_STEPS, m.SOLVE_SECONDS)

# RLlib fixes its config when the algorithm is built: a mutation rebuilds it and restores the
# checkpoint PBT clones (RLlibTrainable.reset_config).
pbt_mutations = {
    "lr": tune.loguniform(5e-5, 3e-3),
    "entropy_coeff": tune.uniform(0.0, 0.02),
    "clip_param": tune.uniform(0.1, 0.3),
}


def check(config: dict) -> PPOSettings:
    return check_settings(PPOSettings, config, "ppo")


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
        "minibatch_size": 2 ** trial.suggest_int("log2_minibatch_size", 5, 9),
        "clip_param": trial.suggest_float("clip_param", 0.1, 0.3),
        "gae_lambda": trial.suggest_float("gae_lambda", 0.9, 1.0),
        "vf_loss_coeff": trial.suggest_float("vf_loss_coeff", 0.001, 1.0, log=True),
    }


BUDGETS = {
    "smoke": Budget(samples=2, overrides={"iterations": 2, "train_batch_size": 256, "minibatch_size": 64,
                                          "num_epochs": 1, "envs_per_env_runner": 2, "eval_episodes": 3},
                    perturbation_interval=1),
    "full": Budget(samples=4, overrides={}, perturbation_interval=5, grace_period=5),
}
