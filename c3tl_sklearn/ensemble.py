"""``C3TLEnsemble``: independently seeded C3TL networks with calibrated uncertainty.

Three things a single fitted network does not give:

- **Uncertainty.** ``predict(X, return_std=True)`` returns, next to the
  ensemble mean, a standard deviation per predicted value whose scale is
  calibrated on held-out pairs (see :class:`C3TLEnsemble`, Notes).
- **New contexts without refit.** ``predict(X, observed=(X_obs, Y_obs))``
  passes post-fit measurements to every member, which adds them to its
  context codes and its closed-form read-out: no gradient step, milliseconds.
- **The next experiment.** :meth:`C3TLEnsemble.suggest_perturbations` ranks
  the unmeasured perturbations of a context by the expected reduction of the
  predictive variance of all the others.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Hashable
from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.base import _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted

from ._fitted import discard_fitted
from ._groups import segment_means
from ._holdout import holdout_mask
from ._labels import encode_labels, unique_labels
from ._parallel import parallel_map
from ._warnings import warn_unknown_contexts
from .adaptation import (
    ContextReadout,
    apply_readout,
    mean_effect_components,
    standardise_features,
)
from .base import PerturbationRegressorMixin
from .persistence import PersistenceMixin

__all__ = ["C3TLEnsemble"]

#: Pseudo-count (in pairs) shrinking a context's variance inflation toward the
#: global one.
_PRIOR_PAIRS = 5.0
#: z-value of a two-sided 95% Gaussian interval.
_Z95 = 1.959963984540054
#: Noise variance of the design's Gaussian process, relative to its prior variance.
_GP_NOISE = 1.0
#: Relative floor that keeps variances and their divisors strictly positive.
_TINY = 1e-12


def _adapts_itself(member) -> bool:
    """Whether a member has a context read-out of its own (``C3TLRegressor``'s).

    Such a member takes ``observed`` into its read-out itself and offers
    ``predict_without_fallback`` to predict with the read-out of fit.
    """
    return callable(getattr(member, "predict_without_fallback", None))


def _fit_member(estimator, X, Y):
    return estimator.fit(X, Y)


def _accepts_observed(estimator) -> bool:
    try:
        return "observed" in inspect.signature(estimator.predict).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic callables
        return False


def _fit_variance_shape(r2: np.ndarray, terms: list[np.ndarray]):
    """Gaussian maximum likelihood for ``var = sum_k w_k * T_k + b_g``.

    ``r2``: squared residuals (n, G); ``terms``: nonnegative (n, G) arrays.
    Returns the weights ``w`` (one per term) and the per-gene floors ``b``.
    Weights and floors are optimised in log space (so they stay positive);
    a term that is zero everywhere gets weight 0.
    """
    n_genes = r2.shape[1]
    active = [k for k, t in enumerate(terms) if np.any(t > 0)]
    scale = float(r2.mean()) or 1.0
    r2s = r2 / scale
    ts = [terms[k] / scale for k in active]
    n_total = r2.size

    def nll(theta):
        w = np.exp(theta[: len(ts)])
        b = np.exp(theta[len(ts) :])
        v = np.broadcast_to(b, r2s.shape).copy()
        for wk, t in zip(w, ts, strict=True):
            v += wk * t
        g_v = 0.5 * (1.0 / v - r2s / v**2) / n_total
        value = 0.5 * float(np.sum(np.log(v) + r2s / v)) / n_total
        grad = [wk * float(np.sum(g_v * t)) for wk, t in zip(w, ts, strict=True)]
        grad_b = b * g_v.sum(axis=0)
        return value, np.concatenate([grad, grad_b])

    b0 = np.maximum(0.5 * r2s.mean(axis=0), 1e-8)
    w0 = [0.5 * float(r2s.mean()) / max(float(t.mean()), _TINY) for t in ts]
    theta0 = np.log(np.concatenate([w0, b0]))
    bounds = [(-25.0, 15.0)] * len(theta0)
    res = minimize(nll, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    theta = res.x
    weights = np.zeros(len(terms))
    weights[active] = np.exp(theta[: len(ts)])
    floors = np.exp(theta[len(ts) :]) * scale
    return weights, floors.reshape(n_genes)


def _interval_inflation(r2: np.ndarray, v: np.ndarray) -> float:
    """Factor on ``v`` that puts 95% of ``|r| / sqrt(factor * v)`` under 1.96."""
    t = np.sqrt(r2 / v).ravel()
    return float(np.quantile(t, 0.95) / _Z95) ** 2


class C3TLEnsemble(PersistenceMixin, PerturbationRegressorMixin):
    """Independently seeded C3TL networks with calibrated predictive uncertainty.

    The members are clones of ``estimator``, each with its own
    ``random_state`` drawn from ``random_state`` (weight initialisation,
    validation split, batch order and, with ``context_keep_min < 1``, the
    context subsets differ). They are fitted on all pairs but a calibration
    set, on which the variance model is fitted; at predict time the
    calibration pairs are handed to the members as measurements (they inform
    their contexts' codes like any ``observed`` pair, without refit).

    Parameters
    ----------
    estimator : estimator or None, default=None
        The member model; ``None`` means ``C3TLRegressor(fallback=None)``:
        the ensemble's spread is that of the networks, and a blend with the
        baselines in every member would cost each member its sub-fits. Any estimator of
        the package's index-table API works; ``predict(X, observed=...)`` is
        used when the estimator supports it (``C3TLRegressor`` does, and
        adds the measurements to its own context read-out); for members
        without a read-out of their own (the baselines) the ensemble fits a
        :class:`~c3tl_sklearn.adaptation.ContextReadout` on their residuals.
    n_estimators : int, default=5
        Number of members.
    calibration_fraction : float in [0, 1), default=0.1
        Fraction of each context's pairs held out from the members to fit the
        variance model. Only pairs whose perturbation stays observed in
        another context are eligible, so calibration is a transfer task like
        the real one. ``0`` fits the members on everything and makes the
        standard deviation the raw ensemble spread (not calibrated).
    adapt_observed : bool, default=True
        With ``observed`` measurements at predict time, members that adapt
        (``C3TLRegressor``) add them to their context read-out (see Notes).
        ``False`` lets them inform the members' context codes only.
    n_jobs : int or None, default=None
        Members fitted in parallel by joblib (on a Dask or Ray cluster inside
        ``joblib.parallel_config(backend="dask")``), each with the machine's
        cores divided by ``n_jobs`` as torch and BLAS threads; ``None`` means
        one at a time.
    random_state : int, RandomState instance or None, default=None
        Seeds the calibration split and the members' seeds. An int gives
        identical predictions on the same device.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members.
    calibration_mask_ : ndarray of bool, shape (n_rows,)
        Rows of the fit data held out from the members for calibration.
    variance_weights_ : ndarray of shape (2,)
        ``(a, d)``: weights of the ensemble variance and of the perturbation's
        spread across contexts in the variance model.
    noise_floor_ : ndarray of shape (n_genes,)
        ``b_g``: per-gene variance floor of the variance model.
    interval_inflation_ : float
        ``s``: factor that makes 95% of the calibration residuals fall within
        1.96 predicted standard deviations.
    context_inflation_ : ndarray of shape (n_contexts,)
        Per-context factor replacing ``interval_inflation_`` for the fitted
        contexts, shrunk toward it by the number of calibration pairs.
    perturbation_spread_ : ndarray of shape (n_perturbations, n_genes)
        Variance of each perturbation's effect across the contexts where the
        members saw it (the median over perturbations where seen once).
    zero_shot_variance_ : ndarray of shape (n_genes,)
        Variance across the fitted contexts of their mean effect offsets;
        added for contexts with no measurement at all.
    measured_ : pandas.DataFrame
        The (context, perturbation) pairs of fit (calibration ones included).
    contexts_, perturbations_, n_features_in_, feature_names_in_, n_genes_, \
gene_names_
        As in :class:`~c3tl_sklearn.C3TLRegressor`.

    See Also
    --------
    C3TLRegressor : The member model.

    Notes
    -----
    **Why calibrate.** Members trained on the same data agree more than their
    errors warrant: the spread of an ensemble captures the model's
    uncertainty about the mapping, not the noise of a measurement nor what no
    member could have learned. So the variance of a prediction for pair
    ``(c, p)`` and gene ``g`` is modelled as::

        var = s_c * (a * ensemble_var + d * spread_pg + b_g)

    with ``spread_pg`` the variance of ``p``'s effect across the contexts
    where it was seen (a perturbation whose effect changes from context to
    context is harder to transfer). ``a``, ``d`` (scalars) and the per-gene
    floor ``b_g`` are fitted by Gaussian maximum likelihood on the held-out
    calibration pairs, which the members predict as they predict any
    unmeasured pair. ``s`` is then the split-conformal factor that puts 95% of
    the calibration residuals inside ``+-1.96`` standard deviations; ``s_c``
    is the same factor computed on context ``c``'s calibration pairs alone,
    shrunk toward ``s`` with a pseudo-count of 5 pairs.

    **Measurements after fit.** ``predict(X, observed=(X_obs, Y_obs))`` hands
    the measurements to every member. A ``C3TLRegressor`` member updates its
    context codes from them and, with ``adapt_observed=True``, adds them to
    its context read-out (see :mod:`c3tl_sklearn.adaptation` and the
    member's ``adaptation`` parameter): the held-out residuals of a
    context's measured pairs, regressed in closed form on perturbation
    features, correct the member's predictions for the other perturbations
    of that context. Intervals of a context new to the model use the global
    factor ``s``.

    **No measurement at all.** A context never seen in fit nor in
    ``observed`` is predicted zero-shot by the members; its variance adds
    ``zero_shot_variance_``, the spread of the fitted contexts' offsets.

    Standard deviations are strictly positive.

    Examples
    --------
    >>> from c3tl_sklearn import C3TLRegressor
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> from c3tl_sklearn.ensemble import C3TLEnsemble
    >>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
    >>> member = C3TLRegressor(max_epochs=5, n_components=None, hidden_dims=(16,),
    ...                        latent_dim=4)
    >>> ens = C3TLEnsemble(member, n_estimators=2, random_state=0).fit(X, Y)
    >>> mean, std = ens.predict(X.iloc[:3], return_std=True)
    >>> mean.shape, std.shape, bool((std > 0).all())
    ((3, 20), (3, 20), True)
    >>> X_new = X[X.context == "ctx0"].assign(context="new")
    >>> mean_new = ens.predict(X_new.iloc[5:], observed=(X_new.iloc[:5], Y.iloc[:5]))
    >>> ens.suggest_perturbations("new", n=2, observed=(X_new.iloc[:5], Y.iloc[:5])).shape
    (2, 2)
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "calibration_fraction": [Interval(Real, 0, 1, closed="left")],
        "adapt_observed": ["boolean"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator=None,
        *,
        n_estimators=5,
        calibration_fraction=0.1,
        adapt_observed=True,
        n_jobs=None,
        random_state=None,
    ):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.calibration_fraction = calibration_fraction
        self.adapt_observed = adapt_observed
        self.n_jobs = n_jobs
        self.random_state = random_state

    # the data contract follows the member's column names
    @property
    def context_col(self) -> Hashable:
        return getattr(self._base_estimator(), "context_col", "context")

    @property
    def perturbation_col(self) -> Hashable:
        return getattr(self._base_estimator(), "perturbation_col", "perturbation")

    def _base_estimator(self):
        if self.estimator is not None:
            return self.estimator
        from .estimator import C3TLRegressor

        return C3TLRegressor(fallback=None)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, Y):
        """Fit the members on all pairs but the calibration ones, then the variance model.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_columns)
            Index table with the context and perturbation columns.
        Y : array-like or DataFrame of shape (n_rows, n_genes)
            Observed effects: a DataFrame is matched to ``X`` by index label, an
            array by position (row i for row i of ``X``).

        Returns
        -------
        self : C3TLEnsemble
        """
        base = self._base_estimator()
        c_codes, p_codes, Y_arr = self._validate_fit_data(X, Y)
        rng = check_random_state(self.random_state)
        cal = holdout_mask(
            c_codes, p_codes, self.calibration_fraction, rng, name="calibration_fraction",
            consequence="standard deviations are the raw ensemble spread (not calibrated).",
        )
        seeds = rng.randint(np.iinfo(np.int32).max, size=self.n_estimators)
        # drawn after the members' seeds, which stay those of earlier versions
        feature_seed = int(rng.randint(np.iinfo(np.int32).max))
        members = []
        for seed in seeds:
            member = clone(base)
            if "random_state" in member.get_params(deep=False):
                member.set_params(random_state=int(seed))
            members.append(member)
        fit_rows = np.flatnonzero(~cal)
        X_fit = X.iloc[fit_rows]
        Y_fit = Y_arr[fit_rows]
        try:
            self.estimators_ = parallel_map(_fit_member, [(m, X_fit, Y_fit) for m in members],
                                            self.n_jobs)
        except KeyboardInterrupt:  # no mix of this fit's tables and an earlier fit's members
            discard_fitted(self)
            raise
        self.calibration_mask_ = cal
        self._accepts_observed = _accepts_observed(self.estimators_[0])
        self.measured_ = pd.DataFrame({
            self.context_col: self.contexts_[c_codes],
            self.perturbation_col: self.perturbations_[p_codes],
        })
        self._measured_codes = (c_codes, p_codes)
        cal_rows = np.flatnonzero(cal)
        self._calibration_observed = (
            (X.iloc[cal_rows], Y_arr[cal_rows]) if cal.any() and self._accepts_observed else None
        )
        self._fit_perturbation_tables(c_codes[~cal], p_codes[~cal], Y_fit)
        self._fit_member_features(p_codes[~cal], Y_fit, feature_seed)
        self._fit_variance_model(X.iloc[cal_rows], Y_arr[cal_rows], c_codes[cal])
        return self

    def _fit_perturbation_tables(self, c_codes, p_codes, Y_fit) -> None:
        """Mean effects, their spread across contexts and the contexts' offsets."""
        n_pert, n_ctx = len(self.perturbations_), len(self.contexts_)
        Y64 = Y_fit.astype(np.float64)
        means, counts = segment_means(p_codes, n_pert, Y64)
        sq, _ = segment_means(p_codes, n_pert, Y64**2)
        spread = np.maximum(sq - means**2, 0.0) * (counts / np.maximum(counts - 1, 1))[:, None]
        once = counts < 2
        if once.all():
            spread[:] = np.maximum(Y64.var(axis=0), _TINY)
        elif once.any():
            spread[once] = np.median(spread[~once], axis=0)
        self.perturbation_spread_ = spread.astype(np.float32)
        offsets, _ = segment_means(c_codes, n_ctx, Y64 - means[p_codes])
        self.zero_shot_variance_ = np.mean(offsets**2, axis=0).astype(np.float32)

    def _fit_member_features(self, p_codes, Y_fit, seed: int) -> None:
        """Perturbation features per member: its read-out's, else standardised mean PCs."""
        fallback = None  # only members without a read-out of their own (the baselines) need it
        self._features = []
        for member in self.estimators_:
            F = getattr(member, "readout_features_", None)
            if F is None:
                if fallback is None:
                    fallback = self._mean_components(p_codes, Y_fit, seed)
                self._features.append(fallback)
                continue
            rows = encode_labels(self.perturbations_, member.perturbations_)
            out = np.zeros((len(self.perturbations_), F.shape[1]))
            out[rows >= 0] = F[rows[rows >= 0]]
            self._features.append(out)

    def _mean_components(self, p_codes, Y_fit, seed: int) -> np.ndarray:
        """Standardised principal components of the perturbations' mean effects."""
        means = mean_effect_components(Y_fit.astype(np.float64), p_codes,
                                       len(self.perturbations_), random_state=seed)
        return standardise_features(means.per_perturbation)[0]

    def _fit_variance_model(self, X_cal, Y_cal, c_cal) -> None:
        n_ctx = len(self.contexts_)
        self.variance_weights_ = np.array([1.0, 0.0])
        self.noise_floor_ = np.zeros(self.n_genes_)
        self.interval_inflation_ = 1.0
        self.context_inflation_ = np.ones(n_ctx)
        if len(c_cal) == 0:
            return
        preds = self._member_predictions(X_cal, None)
        r2 = (Y_cal.astype(np.float64) - preds.mean(axis=0)) ** 2
        ens_var = self._ensemble_var(preds)
        p_cal = encode_labels(
            X_cal[self.perturbation_col].to_numpy(dtype=object), self.perturbations_
        )
        spread = self.perturbation_spread_[p_cal].astype(np.float64)
        weights, floors = _fit_variance_shape(r2, [ens_var, spread])
        self.variance_weights_ = weights
        self.noise_floor_ = np.maximum(floors, _TINY * max(float(r2.mean()), 1e-30))
        v = self._base_variance(ens_var, spread)
        s = _interval_inflation(r2, v)
        self.interval_inflation_ = s
        inflation = np.full(n_ctx, s)
        for c in np.unique(c_cal):
            rows = c_cal == c
            m = float(rows.sum())
            s_c = _interval_inflation(r2[rows], v[rows])
            inflation[c] = (m * s_c + _PRIOR_PAIRS * s) / (m + _PRIOR_PAIRS)
        self.context_inflation_ = inflation

    # -------------------------------------------------------------- helpers
    def _ensemble_var(self, preds: np.ndarray) -> np.ndarray:
        if preds.shape[0] < 2:
            return np.zeros(preds.shape[1:])
        return preds.var(axis=0, ddof=1)

    def _base_variance(self, ens_var: np.ndarray, spread: np.ndarray) -> np.ndarray:
        a, d = self.variance_weights_
        return a * ens_var + d * spread + self.noise_floor_

    def _member_predictions(self, X, observed) -> np.ndarray:
        """(n_members, n_rows, n_genes) float64, one zero-shot warning at most.

        Members that adapt to measurements (``C3TLRegressor``) take the
        user's ``observed`` into their read-out only with ``adapt_observed``.
        """
        out = []
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*never observed in fit", category=UserWarning
            )
            for member in self.estimators_:
                if observed is not None and _adapts_itself(member) and not self.adapt_observed:
                    pred = member.predict_without_fallback(X, observed, readout_observed=False)
                elif observed is not None and self._accepts_observed:
                    pred = member.predict(X, observed=observed)
                else:
                    pred = member.predict(X)
                out.append(np.asarray(pred, dtype=np.float64))
        return np.stack(out)

    def _check_observed(self, observed):
        """Validate ``observed``; return (X_obs, Y_obs, contexts, p_codes) or ``None``."""
        if observed is None:
            return None
        contexts, Y_arr, p_codes = self._validate_observed(observed)
        return observed[0], Y_arr, contexts, p_codes

    def _members_observed(self, obs):
        """What the members receive: the calibration pairs plus the user's measurements."""
        if not self._accepts_observed:
            return None
        cal = self._calibration_observed
        if obs is None:
            return cal
        if cal is None:
            return obs[0], obs[1]
        X_cal, Y_cal = cal
        user = pd.MultiIndex.from_arrays([obs[2], self.perturbations_[obs[3]]])
        cal_pairs = pd.MultiIndex.from_arrays(
            [X_cal[self.context_col].to_numpy(dtype=object),
             X_cal[self.perturbation_col].to_numpy(dtype=object)]
        )
        keep = ~cal_pairs.isin(user)  # a user's measurement replaces a calibration one
        cols = [self.context_col, self.perturbation_col]
        X_all = pd.concat([X_cal.loc[keep, cols], obs[0][cols]], ignore_index=True)
        return X_all, np.vstack([Y_cal[keep], obs[1]])

    def _predict_parts(self, X, observed):
        """Member predictions and per-row variance bookkeeping."""
        c_codes, p_codes, contexts, perturbations = self._validate_predict_data(X)
        self._raise_unknown_perturbations(p_codes, perturbations)
        obs = self._check_observed(observed)
        X_query = X[[self.context_col, self.perturbation_col]].reset_index(drop=True)
        preds = self._member_predictions(X_query, self._members_observed(obs))
        if obs is not None and self.adapt_observed:
            preds = self._adapt_plain_members(preds, contexts, p_codes, obs)
        inflation = np.where(c_codes >= 0, self.context_inflation_[c_codes.clip(min=0)],
                             self.interval_inflation_)
        zero_shot = c_codes < 0
        if obs is not None:
            obs_ctx = pd.Index(obs[2], dtype=object, tupleize_cols=False)
            query_ctx = pd.Index(contexts, dtype=object, tupleize_cols=False)
            zero_shot &= ~query_ctx.isin(obs_ctx)
        return preds, p_codes, inflation, zero_shot

    def _adapt_plain_members(self, preds, contexts, p_codes, obs):
        """The context read-out for members that have none of their own (the baselines).

        Such a member does not use ``observed``, so its residuals on the
        measured pairs are held out as they are.
        """
        plain = [k for k, m in enumerate(self.estimators_) if not _adapts_itself(m)]
        if not plain:
            return preds
        X_obs, Y_obs, obs_contexts, obs_p = obs
        labels = unique_labels(obs_contexts)
        obs_c = encode_labels(obs_contexts, labels)
        query_c = encode_labels(contexts, labels)
        X_obs = X_obs[[self.context_col, self.perturbation_col]].reset_index(drop=True)
        obs_preds = self._member_predictions(X_obs, None)
        preds = preds.copy()
        for k in plain:
            F = self._features[k]
            readout = ContextReadout(len(labels), F.shape[1], self.n_genes_)
            preds[k] += apply_readout(readout, F, (query_c, p_codes),
                                      (obs_c, obs_p, Y_obs - obs_preds[k]))
        return preds

    # -------------------------------------------------------------- predict
    def predict(self, X, return_std=False, observed=None):
        """Ensemble mean (and standard deviation) of each (context, perturbation) row.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table with the context and perturbation columns.
        return_std : bool, default=False
            Also return the calibrated predictive standard deviation of every
            value (the scikit-learn convention of Gaussian processes).
        observed : tuple (X_obs, Y_obs), optional
            Measurements made after fit (an index table and its effects), for
            example a handful of perturbations in a brand-new context. They
            inform the predictions of their contexts without refitting; see
            the class Notes. Every perturbation in ``X_obs`` must have been
            seen in fit.

        Returns
        -------
        Y_mean : ndarray of shape (n_rows, n_genes), float64
        Y_std : ndarray of shape (n_rows, n_genes), float64
            Only with ``return_std=True``; strictly positive.
        """
        check_is_fitted(self)
        if return_std and len(self.estimators_) < 2 and not self.calibration_mask_.any():
            raise ValueError(
                "return_std=True needs a spread to measure: use n_estimators >= 2 or "
                "calibration_fraction > 0."
            )
        preds, p_codes, inflation, zero_shot = self._predict_parts(X, observed)
        warn_unknown_contexts(
            zero_shot, X[self.context_col].to_numpy(dtype=object),
            "none was in `observed` either, so they are predicted zero-shot, with a wide "
            "standard deviation. "
            "Measure a few perturbations in a context to predict it properly.",
        )
        mean = preds.mean(axis=0)
        if not return_std:
            return mean
        std = np.sqrt(self._variance(preds, p_codes, inflation, zero_shot))
        return mean, std

    def _variance(self, preds, p_codes, inflation, zero_shot) -> np.ndarray:
        """Calibrated predictive variance (n_rows, n_genes), strictly positive."""
        var = self._base_variance(
            self._ensemble_var(preds), self.perturbation_spread_[p_codes].astype(np.float64)
        )
        var *= inflation[:, None]
        var[zero_shot] += self.zero_shot_variance_
        tiny = _TINY * max(float(np.mean(self.noise_floor_)), float(np.mean(var)), 1e-20)
        return np.maximum(var, tiny)

    # ------------------------------------------------------ next experiment
    def suggest_perturbations(
        self, context, n=10, *, candidates=None, observed=None, method="variance_reduction"
    ) -> pd.DataFrame:
        """Rank the unmeasured perturbations of a context by what measuring them would bring.

        Parameters
        ----------
        context : hashable
            The context label; it may be one never seen in fit (give its
            measurements so far in ``observed``, or none for a first batch).
        n : int, default=10
            Number of perturbations to suggest (fewer when fewer are left).
        candidates : sequence of labels, optional
            Perturbations that could be measured; default every perturbation
            seen in fit. Those already measured in ``context`` (in fit or in
            ``observed``) are left out.
        observed : tuple (X_obs, Y_obs), optional
            Measurements made since fit, as in :meth:`predict`.
        method : {"variance_reduction", "uncertainty"}, default="variance_reduction"
            ``"variance_reduction"``: a greedy batch that maximises the
            expected reduction of the predictive variance of all the
            candidates (see Notes); ``score`` is each pick's reduction of the
            candidates' mean posterior variance, as a fraction of the prior
            variance, averaged over members, given the pairs measured so far
            and the picks ranked above it. ``"uncertainty"``: the candidates
            with the largest predicted variance (``score``: mean over genes of
            the square of :meth:`predict`'s standard deviation).

        Returns
        -------
        suggestions : pandas.DataFrame
            Columns ``perturbation`` and ``score``, in order of preference
            (row 0 first); empty when no candidate is left.

        Notes
        -----
        What a measurement of ``(context, q)`` brings is its information on
        the context's other pairs: in this ensemble, through the read-out
        that corrects the members from the context's measurements (see
        :meth:`predict`), which regresses residuals on perturbation features.
        ``"variance_reduction"`` models that correction, for each member, as
        a Gaussian process over the member's read-out features (standardised
        perturbation codes and principal components of mean effects; RBF
        kernel with the median squared distance as length scale, noise
        variance equal to the prior variance), conditions it on the
        perturbations already measured in ``context`` (fit and
        ``observed``) and greedily adds the candidate ``j`` that most reduces
        the summed posterior variance of the candidates,
        ``sum_i S_ij**2 / (S_jj + noise)``, then updates ``S``. A stationary
        kernel favours perturbations typical of many others and spread over
        the feature space; ``"uncertainty"`` favours atypical ones. In the
        LINCS simulation of ``examples/suggest_experiments.py``
        ``"variance_reduction"`` beats random picks and ``"uncertainty"``
        does worse than random.
        """
        check_is_fitted(self)
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}.")
        if method not in ("variance_reduction", "uncertainty"):
            raise ValueError(
                f"method must be 'variance_reduction' or 'uncertainty'; got {method!r}."
            )
        obs = self._check_observed(observed)
        cand = self._candidates(context, candidates, obs)
        if len(cand) == 0:
            return pd.DataFrame({"perturbation": pd.Series([], dtype=object),
                                 "score": pd.Series([], dtype=np.float64)})
        n = min(int(n), len(cand))
        if method == "uncertainty":
            X_c = pd.DataFrame({self.context_col: [context] * len(cand),
                                self.perturbation_col: self.perturbations_[cand]})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                _, std = self.predict(X_c, return_std=True, observed=observed)
            score = np.mean(std.astype(np.float64) ** 2, axis=1)
            order = np.argsort(-score, kind="stable")[:n]
            picked, scores = cand[order], score[order]
        else:
            picked, scores = self._greedy_design(context, cand, obs, n)
        return pd.DataFrame({"perturbation": self.perturbations_[picked], "score": scores})

    def _candidates(self, context, candidates, obs) -> np.ndarray:
        """Perturbation codes that could still be measured in ``context``, sorted."""
        if candidates is None:
            cand = np.arange(len(self.perturbations_))
        else:
            labels = np.empty(len(candidates), dtype=object)
            labels[:] = list(candidates)
            cand = encode_labels(labels, self.perturbations_)
            self._raise_unknown_perturbations(cand, labels)
            cand = np.unique(cand)
        measured = np.zeros(len(self.perturbations_), dtype=bool)
        measured[self._measured_in(context, obs)] = True
        return cand[~measured[cand]]

    def _greedy_design(self, context, cand, obs, n):
        """Greedy integrated-variance design under a GP on each member's features."""
        measured = self._measured_in(context, obs)
        covs = []
        for F in self._features:
            Z = F[np.r_[measured, cand]]
            sq = np.sum(Z**2, axis=1)
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * Z @ Z.T, 0.0)
            positive = d2[d2 > 0]
            K = np.exp(-d2 / (np.median(positive) if positive.size else 1.0))
            n_meas = len(measured)
            S = K[n_meas:, n_meas:]
            if n_meas:
                K_mm = K[:n_meas, :n_meas] + _GP_NOISE * np.eye(n_meas)
                K_cm = K[n_meas:, :n_meas]
                S = S - K_cm @ np.linalg.solve(K_mm, K_cm.T)
            covs.append(S)
        available = np.ones(len(cand), dtype=bool)
        picked, scores = [], []
        for _ in range(n):
            gain = np.mean(
                [np.sum(S**2, axis=0) / (np.diag(S) + _GP_NOISE) for S in covs], axis=0
            )
            gain[~available] = -np.inf
            j = int(np.argmax(gain))
            picked.append(cand[j])
            scores.append(float(gain[j]) / len(cand))
            available[j] = False
            for k, S in enumerate(covs):
                col = S[:, j].copy()
                covs[k] = S - np.outer(col, col) / (col[j] + _GP_NOISE)
        return np.asarray(picked, dtype=np.int64), np.asarray(scores)

    def _measured_in(self, context, obs) -> np.ndarray:
        """Codes of the perturbations measured in ``context`` (fit and ``observed``)."""
        measured = np.zeros(len(self.perturbations_), dtype=bool)
        c_code = encode_labels(np.array([context], dtype=object), self.contexts_)[0]
        if c_code >= 0:
            fit_c, fit_p = self._measured_codes
            measured[fit_p[fit_c == c_code]] = True
        if obs is not None:
            same = pd.Index(obs[2], dtype=object, tupleize_cols=False).isin([context])
            measured[obs[3][same]] = True
        return np.flatnonzero(measured)
