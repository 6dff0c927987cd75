"""The fallback: C3TL's predictions blended with the simple baselines', by held-out error.

Where data is scarce (few pairs, few contexts, little shared structure) the
set encoders can be worse than a one-line baseline, and nothing in the fit
itself says so: the network's errors on the pairs it trained on are
in-sample. The fallback measures instead. Before the final fit, a few
sub-fits each hold out most of the measured pairs of some contexts, leaving
them as sparsely measured as the sparsest context of the data, as a target
context is; the network (with its read-out) and the baselines, each fitted
on the rest, predict the held-out pairs. The convex combination of their
predictions with the least squared error over those pairs gives the weights
with which the final model blends its own prediction with the baselines'.

No pair is ever scored by a model that saw it, and the weights are chosen on
the fit data alone. Where the network is the best predictor its weight is
(close to) 1 and the blend is the plain network; in the mean baseline's
world it goes to the mean, in the offset world to the additive baseline.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from .baselines import AdditiveBaseline, LinearTransferBaseline, MeanBaseline
from .callbacks import TrainingDivergedError

__all__ = [
    "CANDIDATES",
    "FallbackFit",
    "convex_weights",
    "fallback_folds",
    "fit_fallback",
    "held_out_predictions",
    "refit_with_observed",
]

#: The predictions blended, in the order of ``fallback_weights_``.
CANDIDATES = ("c3tl", "mean", "additive", "linear")
#: Sub-fits of the weight estimate; each holds out the pairs of a share of the contexts.
N_FOLDS = 2
#: Held-out contexts keep at most this share of their pairs when no context is
#: sparse (all contexts fully measured): the paper's adaptation split keeps 10%,
#: the scarcity protocol up to 50%.
MAX_KEEP_SHARE = 0.5


@dataclass
class FallbackFit:
    """What the sub-fits measured.

    Attributes
    ----------
    weights : ndarray of shape (len(CANDIDATES),)
        Convex weights of the candidates (``CANDIDATES`` order).
    mse : ndarray of shape (len(CANDIDATES) + 1,)
        Held-out mean squared error of each candidate, then of the blend.
    n_pairs : int
        Held-out pairs the weights were chosen on.
    """

    weights: np.ndarray
    mse: np.ndarray
    n_pairs: int


def baselines(context_col, perturbation_col) -> list:
    """The baselines the network is blended with (``CANDIDATES[1:]``), with default settings."""
    cols = dict(context_col=context_col, perturbation_col=perturbation_col)
    return [MeanBaseline(**cols), AdditiveBaseline(**cols), LinearTransferBaseline(**cols)]


def fallback_folds(c_codes: np.ndarray, p_codes: np.ndarray, rng,
                   n_folds: int = N_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training and held-out masks of the sub-fits.

    Each sub-fit masks a share of the contexts down to the sparsest
    context's share of pairs (relative to the largest context), keeping a
    random subset; the rest of their pairs are held out, except those whose
    perturbation would be left without any training pair. Contexts that are
    sparse already (fewer than twice the sparsest's pairs) are never masked.
    When no context is sparse (the sparsest has at least
    :data:`MAX_KEEP_SHARE` of the largest's pairs), every context is
    masked to that share. Returns an empty list when no context can be
    masked.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.fallback import fallback_folds
    >>> c = np.repeat([0, 1, 2], [10, 10, 2])
    >>> p = np.concatenate([np.arange(10), np.arange(10), [0, 1]])
    >>> folds = fallback_folds(c, p, np.random.RandomState(0))
    >>> [np.bincount(c[held], minlength=3).tolist() for train, held in folds]
    [[0, 8, 0], [8, 0, 0]]
    """
    n_c = np.bincount(c_codes)
    present = n_c > 0
    n_min, n_max = n_c[present].min(), n_c[present].max()
    share = n_min / n_max
    if share >= MAX_KEEP_SHARE:
        keep = np.round(MAX_KEEP_SHARE * n_c).astype(int)
        eligible = np.flatnonzero(present & (n_c - keep >= 2))
    else:
        keep = np.maximum(1, np.round(share * n_c)).astype(int)
        eligible = np.flatnonzero((n_c >= 2 * n_min) & (n_c - keep >= 2))
    if eligible.size == 0:
        return []
    order = rng.permutation(eligible)
    folds = []
    for f in range(min(n_folds, order.size)):
        held = np.zeros(len(c_codes), dtype=bool)
        for c in order[f::n_folds]:
            rows = np.flatnonzero(c_codes == c)
            # by perturbation first, so that the held-out pairs do not depend on row order
            rows = rows[np.argsort(p_codes[rows], kind="stable")]
            held[rows[rng.permutation(rows.size)[keep[c]:]]] = True
        # a perturbation needs a training pair somewhere to be predicted
        trained = np.bincount(p_codes[~held], minlength=p_codes.max() + 1)
        held &= trained[p_codes] > 0
        if held.any():
            folds.append((~held, held))
    return folds


def convex_weights(gram: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """The ``w >= 0``, ``sum(w) = 1`` minimising ``w' G w - 2 w' b``, exactly.

    With a handful of candidates every support can be tried: on a support
    the equality-constrained minimum solves one small linear system, and the
    best of the feasible ones is the simplex minimum. Ties (candidates whose
    predictions coincide) go to the earlier candidate.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.fallback import convex_weights
    >>> P = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # two candidates' predictions
    >>> y = np.array([0.75, 0.25, 1.0])
    >>> convex_weights(P.T @ P, P.T @ y).round(3).tolist()
    [0.75, 0.25]
    """
    k = len(cross)
    best, best_loss = np.eye(k)[0], np.inf
    scale = max(float(np.abs(np.diag(gram)).max()), 1e-300)
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            idx = list(support)
            A = np.block([[gram[np.ix_(idx, idx)], np.ones((size, 1))],
                          [np.ones((1, size)), np.zeros((1, 1))]])
            rhs = np.concatenate([cross[idx], [1.0]])
            try:
                sol = np.linalg.solve(A, rhs)
            except np.linalg.LinAlgError:
                continue
            w = np.zeros(k)
            w[idx] = sol[:size]
            if (w < -1e-12).any():
                continue
            w = np.clip(w, 0.0, None)
            w /= w.sum()
            loss = float(w @ gram @ w - 2 * w @ cross)
            if loss < best_loss - 1e-12 * scale:
                best, best_loss = w, loss
    return best


def held_out_predictions(estimator, X: pd.DataFrame, Y: np.ndarray, folds, rng):
    """Each fold's held-out rows and every candidate's predictions of them.

    Yields ``(held, preds)``: the held-out mask and a list of
    ``(n_held, n_genes)`` float64 predictions in :data:`CANDIDATES` order,
    each from a model fitted on the fold's training rows alone. The network
    is a clone of ``estimator`` without the fallback, seeded from ``rng``.
    A fold where the network has no pair left to train on is skipped.
    """
    for train, held in folds:
        seed = int(rng.randint(np.iinfo(np.int32).max))
        net = clone(estimator).set_params(fallback=None, random_state=seed, verbose=0)
        models = [net, *baselines(estimator.context_col, estimator.perturbation_col)]
        X_train, X_held = X.iloc[np.flatnonzero(train)], X.iloc[np.flatnonzero(held)]
        preds = []
        with warnings.catch_warnings():
            # the sub-fits' own notices (small validation sets, contexts that fall
            # back inside a baseline) are about data the user never passed
            warnings.simplefilter("ignore", UserWarning)
            try:
                for model in models:
                    model.fit(X_train, Y[train])
                    preds.append(np.asarray(model.predict(X_held), dtype=np.float64))
            except TrainingDivergedError:
                raise  # the final fit would diverge too: say so now
            except ValueError:
                # masked this far, no pair is left to train the network on: the
                # sub-fit measures nothing, and the other folds decide
                continue
        yield held, preds


def fit_fallback(estimator, X: pd.DataFrame, Y: np.ndarray, c_codes, p_codes,
                 rng) -> FallbackFit | None:
    """Weights of the blend from sub-fits of ``estimator`` and the baselines.

    ``estimator`` is a ``C3TLRegressor``; ``Y`` holds the effects of the rows
    of ``X`` (matched already). Returns ``None`` when no sub-fit could
    measure anything (no context to mask, or no pair left to train on).
    """
    folds = fallback_folds(c_codes, p_codes, rng)
    k = len(CANDIDATES)
    gram, cross = np.zeros((k, k)), np.zeros(k)
    sq_err, yy, n_values, n_pairs = np.zeros(k), 0.0, 0, 0
    for held, preds in held_out_predictions(estimator, X, Y, folds, rng):
        P = np.stack([p.ravel() for p in preds], axis=1)
        y = Y[held].astype(np.float64).ravel()
        gram += P.T @ P
        cross += P.T @ y
        yy += float(y @ y)
        sq_err += ((P - y[:, None]) ** 2).sum(axis=0)
        n_values += y.size
        n_pairs += int(held.sum())
    if n_pairs == 0:
        return None
    weights = convex_weights(gram, cross)
    # the blend's squared error from the same sums: ||y||^2 - 2 w'b + w'Gw
    mse_blend = (yy - 2 * weights @ cross + weights @ gram @ weights) / n_values
    return FallbackFit(weights, np.append(sq_err / n_values, mse_blend), n_pairs)


def refit_with_observed(members: list, X_obs: pd.DataFrame, Y_obs: np.ndarray) -> list:
    """Copies of fitted baselines refitted on their fit pairs plus ``(X_obs, Y_obs)``.

    The baselines are closed-form, so this is what each would predict had the
    new measurements been part of fit. The members share their fit data (as
    ``fallback_estimators_`` do) and label columns; a pair of ``X_obs`` that
    repeats a fit pair keeps its fit effect (a baseline holds one effect per
    pair). ``None`` members stay ``None``.
    """
    fitted = [m for m in members if m is not None]
    if not fitted:
        return list(members)
    X_fit, Y_fit = fit_table(fitted[0])
    cols = [fitted[0].context_col, fitted[0].perturbation_col]
    new = ~pd.MultiIndex.from_frame(X_obs[cols]).isin(pd.MultiIndex.from_frame(X_fit))
    X_all = pd.concat([X_fit, X_obs.loc[new, cols]], ignore_index=True)
    Y_all = np.vstack([Y_fit, np.asarray(Y_obs)[new]])
    return [None if m is None else clone(m).fit(X_all, Y_all) for m in members]


def fit_table(member) -> tuple[pd.DataFrame, np.ndarray]:
    """The index table and effects a fitted baseline was fitted on (its public fitted state)."""
    ctx, pert = np.nonzero(member.pair_index_ >= 0)
    order = np.argsort(member.pair_index_[ctx, pert])
    X = pd.DataFrame({member.context_col: member.contexts_[ctx[order]],
                      member.perturbation_col: member.perturbations_[pert[order]]})
    return X, member.effects_
