"""Metric names, imported by trainables, search spaces, the CLI and the tests alike."""

# The one metric every scheduler and searcher optimizes: higher is better.
SCORE = "score"
MODE = "max"

TRAIN_LOSS = "train/loss"
TRAIN_LR = "train/lr"
TRAIN_STEPS = "train/steps"
TRAIN_SEQUENCES = "train/sequences"
TRAIN_SEQUENCES_PER_S = "train/sequences_per_s"
TRAIN_GRAD_NORM = "train/grad_norm"

# Synthetic data (ground truth known): true expected rating of the recommendations.
EVAL_TRUE_RATING = "eval/true_rating"
EVAL_ORACLE_RATING = "eval/oracle_rating"
# Real data: full-ranking metrics on held-out interactions.
EVAL_HIT_RATE = "eval/hr@10"
EVAL_NDCG = "eval/ndcg@10"
EVAL_RATED_SHARE = "eval/rated_share"
EVAL_RATED_MEAN = "eval/rated_mean_rating"
EVAL_SECONDS = "eval/seconds"

# Reinforcement learning (dqn, qtable, RLlib baselines): greedy evaluation, no exploration, the
# environment's own reward. The score is EVAL_RETURN_MEAN.
EVAL_RETURN_MEAN = "eval/return_mean"
EVAL_RETURN_STD = "eval/return_std"
EVAL_EPISODES = "eval/episodes"
# First evaluation whose mean return reached the env's solve threshold (NaN until then).
SOLVE_ENV_STEPS = "eval/solve_env_steps"
SOLVE_SECONDS = "eval/solve_seconds"
SOLVED = "eval/solved"
TRAIN_ENV_STEPS = "train/env_steps"
TRAIN_EPISODES = "train/episodes"
TRAIN_EPISODE_RETURN = "train/episode_return_mean"
TRAIN_UPDATES = "train/updates"
TRAIN_SAMPLES_TRAINED = "train/samples_trained"
TRAIN_EPSILON = "train/epsilon"
TRAIN_PER_BETA = "train/per_beta"
TRAIN_MS_PER_UPDATE = "train/ms_per_update"
TRAIN_ENV_STEPS_PER_S = "train/env_steps_per_s"
TRAIN_PEAK_RSS_MB = "train/peak_rss_mb"

# Baselines are computed on the same split and reported beside the model as
# "baseline/<name>/<metric>"; every baseline reports its own "score".
BASELINE_PREFIX = "baseline/"
BASELINE_POPULARITY = "popularity"
BASELINE_RANDOM = "random"  # recommenders: random items; RL: the uniform random policy

# Current value of every hyperparameter PBT may mutate, one scalar each per iteration.
HPARAM_PREFIX = "hparams/"


def baseline_metric(baseline: str, metric: str) -> str:
    """`baseline_metric("popularity", SCORE)` -> "baseline/popularity/score"."""
    return f"{BASELINE_PREFIX}{baseline}/{metric}"
