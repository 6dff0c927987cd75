"""One worker of the shared-study tests (tests/tuning/test_postgres.py), run as a process.

``python pg_worker.py URL STUDY MAX_TRIALS``: runs C3TLSearchCV on the study until it
holds MAX_TRIALS finished trials, then prints the numbers of the trials it started.
"""

import json
import sys

from optuna.distributions import FloatDistribution

from c3tl_sklearn import C3TLRegressor
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.model_selection import LeaveOneContextOut
from c3tl_sklearn.tuning import C3TLSearchCV, make_storage


def main(url: str, study_name: str, max_trials: int) -> None:
    # heartbeats every second: a killed worker's trial is failed after 3 s, not 3 min
    storage = make_storage(url, heartbeat_interval=1, grace_period=3, max_retry=1)
    X, Y = make_synthetic_perturbations(4, 20, 10, random_state=0)
    # about a second per trial: long enough to be killed in the middle of one
    model = C3TLRegressor(max_epochs=100, hidden_dims=(16,), latent_dim=4, random_state=0)
    cv = LeaveOneContextOut(adaptation_fraction=0.2, n_test_contexts=2, random_state=0)
    search = C3TLSearchCV(
        model, {"lr": FloatDistribution(1e-3, 1e-2, log=True)}, n_trials=max_trials,
        max_trials=max_trials, cv=cv, storage=storage, study_name=study_name,
        pruning=False, refit=False,
    )
    search.fit(X, Y)
    print(json.dumps({"started": search.n_trials_run_}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
