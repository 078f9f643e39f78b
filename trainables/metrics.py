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
TRAIN_EPOCHS = "train/epochs"  # passes over the training data so far
BEST_EPOCH = "best_epoch"  # early stopping: the epoch whose weights the trial keeps

# Recommenders (trainables/recsys/protocol.py): "valid/<name>" figures select (score is one of them);
# "test/<name>" figures are measured once, after selection, on the selected trial.
VALID = "valid"
TEST = "test"
HR = "hr@10"
NDCG = "ndcg@10"
MRR = "mrr"
COVERAGE = "coverage@10"
LIKED = "liked_"  # prefix: the same metric over targets rated >= 4
USERS = "users"
TARGET_RATING = "rating"  # in PER_USER: the rating of each test user's target
# test only: {"users", HR, NDCG, MRR, "rating"} lists, one entry per test user (intervals over users)
PER_USER = "per_user"
TRUE_RATING = "true_rating"  # synthetic data: true expected rating of the top 10
TRUE_RATING_NORM = "true_rating_norm"  # the same, random 0, oracle 1
EVAL_SECONDS = "eval/seconds"
# Bad input counted rather than hidden (protocol.evaluate): NaN or infinite scores of rankable
# items (ranked last), and targets the user had already interacted with (a miss by the protocol).
NONFINITE_SCORES = "nonfinite_scores"
REPEATED_TARGETS = "repeated_targets"

# Reinforcement learning (dqn, qtable, RLlib baselines): greedy evaluation, no exploration, the
# environment's own reward. The score is EVAL_RETURN_MEAN.
# The selected trial's policy is measured once more after the search, on `test_episodes` episodes
# with other seeds: "test/return_mean" etc. (split_metric(TEST, RETURN_MEAN)).
RETURN_MEAN = "return_mean"
RETURN_STD = "return_std"
EPISODES = "episodes"
SOLVE = "solved"
TEST_SOLVED = f"{TEST}/{SOLVE}"  # 1 when the test mean return reaches the solve threshold
EVAL_RETURN_MEAN = "eval/return_mean"
EVAL_RETURN_STD = "eval/return_std"
EVAL_EPISODES = "eval/episodes"
EVAL_COMPLETE = "eval/complete"  # 0: stopped once the mean could not reach the solve return (a lower bound)
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
# Where an iteration's seconds went (dqn): stepping the envs (acting included) and updating.
TRAIN_SECONDS_STEPPING = "train/seconds_stepping"
TRAIN_SECONDS_UPDATING = "train/seconds_updating"
TRAIN_ENV_STEPS_PER_S = "train/env_steps_per_s"
TRAIN_PEAK_RSS_MB = "train/peak_rss_mb"

# Baselines are computed on the same split and reported beside the model as
# "baseline/<name>/<metric>"; every baseline reports its own "score".
BASELINE_PREFIX = "baseline/"
BASELINE_POPULARITY = "popularity"
BASELINE_RANDOM = "random"  # recommenders: random items; RL: the uniform random policy

# Current value of every hyperparameter PBT may mutate, one scalar each per iteration.
HPARAM_PREFIX = "hparams/"


def split_metric(split: str, name: str) -> str:
    """`split_metric(VALID, NDCG)` -> "valid/ndcg@10"."""
    return f"{split}/{name}"


def baseline_metric(baseline: str, metric: str) -> str:
    """`baseline_metric("popularity", SCORE)` -> "baseline/popularity/score"."""
    return f"{BASELINE_PREFIX}{baseline}/{metric}"
