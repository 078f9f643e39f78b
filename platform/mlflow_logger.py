"""`--mlflow`: Ray's MLflow logger, adapted. A module of its own because Ray's integration imports
mlflow (seconds), which every other command and every run without --mlflow must not pay for."""

import re

from ray.air.integrations.mlflow import MLflowLoggerCallback

from platform import ray_compat


def mlflow_name(key: str) -> str:
    """MLflow accepts letters, digits, _ - . space : and /; "valid/hr@10" becomes "valid/hr_at_10"."""
    return re.sub(r"[^\w\-. :/]", "_", key.replace("@", "_at_"))


class MLflowLogger(MLflowLoggerCallback):
    """Ray's MLflow logger, with metric names MLflow accepts (ours contain "@"), and a trial's params
    logged once: MLflow refuses to change a logged param, and PBT restarts a trial with another
    config (the values it follows are the hparams/* metrics, every iteration)."""

    def log_trial_start(self, trial):
        if not ray_compat.mlflow_has_run(self, trial):
            super().log_trial_start(trial)

    def log_trial_result(self, iteration: int, trial, result: dict):
        super().log_trial_result(iteration, trial, {mlflow_name(k): v for k, v in result.items()})
