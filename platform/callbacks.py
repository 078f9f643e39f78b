"""Driver-side Tune callbacks (never pickled to workers, so they may live in `platform/`)."""

from ray.tune.logger import TBXLoggerCallback
from ray.tune.utils import flatten_dict


class TensorBoardCallback(TBXLoggerCallback):
    """Tune's TensorBoard logger with HParams for every trial.

    Tune writes HParams only from `trial.evaluated_params` (the values a search sampled), so a
    fixed-config run gets none and a PBT run shows its initial values only. This writes the
    trial's whole config as it stands at the end, PBT mutations included. The per-iteration
    value of each mutated hyperparameter comes from the trainable as `hparams/<name>` scalars.
    """

    def log_trial_end(self, trial, failed: bool = False):
        if trial in self._trial_writer and self._trial_result.get(trial):
            scalars = {
                k: v
                for k, v in flatten_dict(self._trial_result[trial], delimiter="/").items()
                if isinstance(v, (int, float))
            }
            self._try_log_hparams(trial, scalars)
        if trial in self._trial_writer:
            self._trial_writer[trial].close()
            del self._trial_writer[trial]
            del self._trial_result[trial]

    def _try_log_hparams(self, trial, result):
        # TBXLoggerCallback reads trial.evaluated_params; hand it the current full config instead.
        sampled = trial.evaluated_params
        trial.evaluated_params = flatten_dict(trial.config, delimiter="/")
        try:
            super()._try_log_hparams(trial, result)
        finally:
            trial.evaluated_params = sampled
