"""``C3TLRegressor``: the C3TL set-encoder model as a scikit-learn estimator."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from skorch.callbacks import EarlyStopping, LRScheduler
from skorch.dataset import Dataset
from skorch.helper import predefined_split
from threadpoolctl import threadpool_limits

from ._contract import check_hidden_dims
from ._device import check_device
from ._fitted import discard_fitted
from ._groups import leave_one_out_mean, row_blocks, segment_means
from ._holdout import holdout_mask
from ._labels import encode_labels, unique_labels
from ._net import C3TLNet, TensorBatchIterator
from ._parallel import fit_threads, limit_threads
from ._warnings import warn_unknown_contexts
from .adaptation import (
    ContextReadout,
    apply_readout,
    mean_effect_components,
    standardise_features,
)
from .base import PerturbationRegressorMixin
from .callbacks import TrainingDivergedError, fit_guarded, with_training_guard
from .fallback import baselines as fallback_baselines
from .fallback import fit_fallback, refit_with_observed
from .network import CONTEXT, CONTEXT_INPUTS, PERTURBATION, C3TLNetwork, query_pairs
from .persistence import PersistenceMixin

__all__ = ["AUTO_DEPARTURE_MIN_CONTEXTS", "AUTO_EPOCH_PAIRS", "AUTO_FALLBACK_MAX_PAIRS",
           "AUTO_MAX_EPOCHS", "C3TLRegressor"]

#: ``fallback="auto"`` blends with the baselines up to this many fit pairs. Its
#: sub-fits cost about two more fits; above it the network alone was first in
#: every cell of the regime suite (``benchmarks/regimes.py``).
AUTO_FALLBACK_MAX_PAIRS = 4000

#: ``max_epochs="auto"``: at most this many epochs, and no more than
#: ``AUTO_EPOCH_PAIRS`` training-pair visits (epochs x training pairs) once the
#: pairs are many, but never fewer than ``AUTO_MIN_EPOCHS`` epochs.
AUTO_MAX_EPOCHS = 500
#: Above ``AUTO_EPOCH_PAIRS / AUTO_MAX_EPOCHS`` training pairs an epoch holds
#: several steps of ``batch_size`` pairs, and the fit's cost is bounded by about
#: as many steps as a small data set's 500 full-batch epochs.
AUTO_EPOCH_PAIRS = 2_000_000
AUTO_MIN_EPOCHS = 20

#: ``context_input="auto"`` reads departures from this many fit contexts on: with
#: fewer, a perturbation's mean over the other contexts is one or two measurements,
#: and on the regime suite the departure lost there (most on offset-dominated data).
AUTO_DEPARTURE_MIN_CONTEXTS = 4

#: C3TLNetwork's arguments, in its signature's order, as skorch parameters.
_MODULE_ARGS = tuple(f"module__{name}" for name in (
    "n_genes", "n_contexts", "n_perturbations", "latent_dim", "hidden_dims", "dropout",
    "leave_target_out", "residual", "context_keep_min", "batch_sets", "context_input"))


#: ``lr_schedule="plateau"``: the learning rate is multiplied by ``PLATEAU_FACTOR``
#: once more than ``PLATEAU_PATIENCE`` epochs in a row bring no lower validation loss
#: (torch's ``ReduceLROnPlateau`` rule), and early stopping counts an epoch as an
#: improvement only below ``1 - PLATEAU_THRESHOLD`` times the best loss so far (at
#: a decayed rate, smaller gains do not pay for an epoch).
PLATEAU_FACTOR, PLATEAU_PATIENCE, PLATEAU_THRESHOLD = 0.3, 3, 0.01

#: AdamW's fused kernel runs on CPU from torch 2.4 on (earlier versions raise).
_FUSED_ADAMW = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def _shrinkage(n, signal: float, noise: float) -> np.ndarray:
    """Posterior-mean weight ``s / (s + v / n)`` of a mean of ``n`` measurements, in [0, 1]."""
    n = np.asarray(n, dtype=np.float64)
    if signal <= 0:
        return np.zeros_like(n)
    return signal / (signal + noise / np.maximum(n, 1))


class C3TLRegressor(PersistenceMixin, PerturbationRegressorMixin):
    """Predict perturbation effects in contexts where they were never measured.

    C3TL (Scholkemper & Mukherjee, 2026) encodes each perturbation from the
    contexts where it was observed and each context from the perturbations
    observed in it, and decodes the sum of the two codes into an effect
    vector. It is trained through skorch on the observed pairs; the
    observations are part of the fitted state and are what ``predict``
    encodes from.

    Parameters
    ----------
    context_col, perturbation_col : str, default="context", "perturbation"
        Columns of the index table holding the labels (any hashable values).
    n_components : int or None, default=50
        The encoders read, and the decoder writes, effects in their top
        ``n_components`` principal directions (a PCA of the training effects,
        computed once per fit). Squared error in that orthonormal basis equals
        squared error over genes up to a constant, so this is the paper's model
        with the decoder's output kept in the span of the data, plus (with
        ``residual``) the perturbation's mean outside the basis, shrunk by
        how much of it recurs across contexts (``shrink_outside_basis``).
        It makes an epoch's cost independent of the number of genes; what
        the basis leaves out of a context is recovered in gene space by the
        read-out (``adaptation``). ``None``, or a value not below the number
        of genes, works on the genes directly.
    latent_dim : int, default=64
        Width of the shared latent space of perturbation and context codes.
    hidden_dims : tuple of int, default=(256,)
        Hidden layer widths of each encoder; the decoder mirrors them.
    dropout : float, default=0.0
        Dropout after every hidden activation.
    lr : float, default=3e-3
        AdamW learning rate.
    weight_decay : float, default=1e-4
        AdamW weight decay.
    max_epochs : int or "auto", default="auto"
        Upper bound on training epochs. ``"auto"`` allows
        :data:`AUTO_MAX_EPOCHS` (500), or, with more than 4,000 training
        pairs, ``AUTO_EPOCH_PAIRS / n_training_pairs`` (rounded up, at least
        20): a large data set's epoch holds several optimisation steps, so it
        needs fewer epochs, and the fit's cost stays bounded. Early stopping
        may end training sooner either way; ``net_.max_epochs`` is the bound
        a fit used. On large data sets a fit that runs until early stopping
        (an integer such as 500) can reach a lower error in several times
        the time (the README's speed section).
    batch_size : int or None, default=4096
        Query pairs per optimisation step. With at most this many training
        pairs an epoch is one exact full-batch step in which the encoders see
        every observation. With more, the pairs are split into
        ``ceil(n_pairs / batch_size)`` batches of about equal size made of
        whole perturbations (all their pairs), and a step's encoders read only
        its perturbations' observations: perturbation codes stay exact and
        each context code is the mean over the batch's pairs of that context.
        A step then costs in proportion to its batch, so an epoch is linear in
        the number of pairs and gives several steps
        (``benchmarks/batch_size.py`` measures what that costs in accuracy).
        ``None`` always trains full-batch.
    patience : int, default=20
        Early stopping: epochs without improvement of the validation loss
        before training stops; the best weights are restored.
    lr_schedule : {"constant", "plateau"}, default="constant"
        ``"constant"`` trains at ``lr`` throughout. ``"plateau"`` multiplies
        the learning rate by 0.3 once more than 3 epochs in a row bring no
        lower validation loss (skorch's ``LRScheduler`` with torch's
        ``ReduceLROnPlateau``), and early stopping then counts only
        improvements of more than 1% of the best loss; a ``patience`` of at
        least 5 leaves the rate room to be cut before training stops. It
        shortens fits, but it is not the default: on the regime suite it
        stopped too early on several mid-sized data sets and lost accuracy
        there (the README's speed section; ``benchmarks/schedule.py``
        compares schedules on one shape). Without a validation split
        (``validation_fraction=0``) the rate stays constant.
    validation_fraction : float, default=0.1
        Fraction of each context's observed pairs held out for early stopping.
        Only pairs whose perturbation stays observed in another context are
        eligible, so validation looks like the task. ``0`` trains for
        ``max_epochs`` without early stopping.
    leave_target_out : bool, default=True
        Remove a training pair's own observation from both of its means, so
        that training matches prediction of unmeasured pairs. ``False`` is the
        paper's autoencoder training.
    residual : bool, default=True
        Decode a correction to the perturbation's mean observed effect rather
        than the effect itself: ``x_hat = mean_p + Gamma(z_p + psi_c)``. The
        network then spends its capacity on how contexts differ.
    context_input : {"auto", "departure", "effect"}, default="auto"
        What the context encoder reads of each observed pair ``(c, q)``:
        ``"departure"``, the effect minus the mean effect of ``q`` in the
        other contexts that measured it (zero where none did), so a context
        code is built from how the context departs from the others on the
        perturbations it measured; ``"effect"``, the effect itself (the
        paper's encoder, which learns to cancel each perturbation's mean
        through its identity input). Post-fit measurements (``observed``)
        depart from the mean over all fit contexts. ``"auto"`` reads
        departures when the fit data have at least
        :data:`AUTO_DEPARTURE_MIN_CONTEXTS` (4) contexts, effects otherwise;
        ``net_.module_.context_input`` is what a fit used. Departures train
        in fewer epochs to a lower validation loss where contexts are many
        (the README's speed section). Model files written before this
        parameter existed load with ``"effect"``, the encoder they were
        trained with.
    shrink_outside_basis : bool, default=True
        With ``residual`` and a basis, weight each perturbation's mean
        outside the basis by how much of it recurs across contexts
        (``outside_shrinkage_``) rather than adding it in full. With few
        contexts per perturbation, or effects whose part outside the basis
        is mostly each context's own, the full mean adds noise.
    context_keep_min : float, default=1.0
        In training, every step builds each context code from a random subset
        of that context's pairs, keeping a fraction drawn uniformly from
        ``[context_keep_min, 1]``. Values below 1 teach the context encoder to
        work from a handful of measurements (see ``predict(observed=...)``).
    context_balance : float in [0, 1], default=1.0
        Weight each training pair's error by ``n_c ** -context_balance``, where
        ``n_c`` is the number of training pairs of its context: 0 weights pairs
        equally, 1 weights contexts equally, so a sparsely measured target
        context counts as much as a complete one.
    adaptation : {"ridge", "offset"} or None, default="ridge"
        How a context's own measurements correct its predictions after
        training (see :mod:`c3tl_sklearn.adaptation`). The network's
        predictions of the context's measured pairs, each made with the pair
        left out of both codes, leave residuals; ``"ridge"`` adds the
        context's mean residual (shrunk like :class:`AdditiveBaseline`'s
        offset) plus a ridge regression of the residuals on perturbation
        features (the latent perturbation codes and the principal components
        of the perturbations' mean effects), in gene space. ``"offset"`` adds
        the shrunk mean residual alone; ``None`` leaves the network's
        predictions as they are. Measurements passed to :meth:`predict` as
        ``observed`` join those of fit in the same read-out.
    fallback : {"auto", "always"} or None, default="auto"
        Blend the prediction with those of :class:`MeanBaseline`,
        :class:`AdditiveBaseline` and :class:`LinearTransferBaseline` by
        weights measured on held-out pairs (see :mod:`c3tl_sklearn.fallback`):
        before the final fit, two sub-fits hold out most pairs of some
        contexts and every model predicts them; the convex combination with
        the least squared error is kept. Where the network is the best
        model the blend is the network alone; where it cannot be trusted
        (few pairs, few contexts, little shared structure) the prediction
        moves to the baselines. ``"auto"`` blends up to
        :data:`AUTO_FALLBACK_MAX_PAIRS` fit pairs, ``"always"`` at any size,
        ``None`` never (the network and read-out alone).
    callbacks : list of skorch callbacks or None, default=None
        Extra skorch callbacks (learning-rate schedules, checkpoints, ...).
    device : {"cpu", "cuda"} or str, default="cpu"
        Torch device for training and prediction (``"cuda:N"`` for a given
        GPU); checked in ``fit`` against what this machine has.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split, the weight initialisation and batch order.
        The same seed gives identical predictions on the same device.
    verbose : int, default=0
        ``> 0`` prints skorch's epoch table.

    Attributes
    ----------
    contexts_, perturbations_ : ndarray of object
        Labels seen in fit, sorted.
    n_features_in_ : int
        Number of columns of the index table.
    feature_names_in_ : ndarray of object
        Column names of the index table.
    n_genes_ : int
        Width of the effect vectors.
    pca_ : sklearn.decomposition.PCA or None
        The response basis (see ``n_components``); ``None`` when the network
        works on genes.
    mean_outside_basis_ : ndarray of shape (n_perturbations, n_genes) or None
        With ``residual=True`` and a basis: each perturbation's mean observed
        effect minus its projection on the basis.
    outside_variances_ : ndarray of shape (2,) or None
        Per-pair variance of the effects outside the basis that is shared by
        a perturbation's contexts (signal) and that is not (noise), estimated
        from each fit pair against its perturbation's mean over the other
        contexts.
    outside_shrinkage_ : ndarray of shape (n_perturbations,) or None
        Factor on ``mean_outside_basis_`` in predictions (1 with
        ``shrink_outside_basis=False``): ``s / (s + v / n)``
        for signal ``s``, noise ``v`` and ``n`` contexts measuring the
        perturbation, the posterior-mean weight of a mean of ``n`` noisy
        measurements. Where few contexts measure a perturbation, or the
        effects outside the basis are mostly noise, the mean outside the
        basis is mostly left out.
    gene_names_ : ndarray of object or None
        Column names of ``Y`` when it was a DataFrame.
    net_ : skorch.NeuralNetRegressor
        The trained skorch net; ``net_.module_`` is the
        :class:`~c3tl_sklearn.network.C3TLNetwork`.
    history_ : skorch.History
        Per-epoch training and validation losses.
    n_epochs_ : int
        Epochs trained.
    validation_mask_ : ndarray of bool, shape (n_rows,)
        Rows of the fit data held out for early stopping.
    readout_ : ContextReadout or None
        Per-context statistics of the held-out residuals of the fit data
        (``None`` when ``adaptation=None``).
    readout_features_ : ndarray of shape (n_perturbations, n_features) or None
        Standardised perturbation features the read-out regresses on.
    fallback_weights_ : ndarray of shape (4,) or None
        Weights of the network's prediction and of the mean, additive and
        linear-transfer baselines' (:data:`c3tl_sklearn.fallback.CANDIDATES`
        order), summing to 1; ``None`` when no blend was fitted.
    fallback_mse_ : ndarray of shape (5,) or None
        Held-out mean squared error of each of those predictions, then of
        the blend, on the pairs the weights were chosen on.
    fallback_estimators_ : list of (estimator or None) or None
        The three baselines fitted on all the fit data; ``None`` where their
        weight is 0.

    Notes
    -----
    Defined behaviour at predict time:

    - a pair that was observed in fit is predicted from all observations,
      its own included (a reconstruction);
    - a perturbation observed only in other contexts is transferred (the
      purpose of the model);
    - a context label never seen in fit is encoded as the mean context code,
      with a ``UserWarning`` (zero-shot: no information about the context);
    - a perturbation label never seen in fit raises ``ValueError``: there is
      nothing to encode it from.

    Examples
    --------
    >>> from c3tl_sklearn import C3TLRegressor
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
    >>> model = C3TLRegressor(max_epochs=5, random_state=0).fit(X, Y)
    >>> model.predict(X.iloc[:3]).shape
    (3, 20)
    """

    _parameter_constraints: dict = {
        "context_col": "no_validation",
        "perturbation_col": "no_validation",
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_dims": ["array-like"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "lr_schedule": [StrOptions({"constant", "plateau"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "leave_target_out": ["boolean"],
        "residual": ["boolean"],
        "context_input": [StrOptions({"auto", *CONTEXT_INPUTS})],
        "shrink_outside_basis": ["boolean"],
        "context_keep_min": [Interval(Real, 0, 1, closed="right")],
        "context_balance": [Interval(Real, 0, 1, closed="both")],
        "adaptation": [StrOptions({"ridge", "offset"}), None],
        "fallback": [StrOptions({"auto", "always"}), None],
        "callbacks": [list, None],
        "device": [StrOptions({"cpu", "cuda"}), str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        context_col="context",
        perturbation_col="perturbation",
        n_components=50,
        latent_dim=64,
        hidden_dims=(256,),
        dropout=0.0,
        lr=3e-3,
        weight_decay=1e-4,
        max_epochs="auto",
        batch_size=4096,
        patience=20,
        lr_schedule="constant",
        validation_fraction=0.1,
        leave_target_out=True,
        residual=True,
        context_input="auto",
        shrink_outside_basis=True,
        context_keep_min=1.0,
        context_balance=1.0,
        adaptation="ridge",
        fallback="auto",
        callbacks=None,
        device="cpu",
        random_state=None,
        verbose=0,
    ):
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.n_components = n_components
        self.latent_dim = latent_dim
        self.hidden_dims = hidden_dims
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.lr_schedule = lr_schedule
        self.validation_fraction = validation_fraction
        self.leave_target_out = leave_target_out
        self.residual = residual
        self.context_input = context_input
        self.shrink_outside_basis = shrink_outside_basis
        self.context_keep_min = context_keep_min
        self.context_balance = context_balance
        self.adaptation = adaptation
        self.fallback = fallback
        self.callbacks = callbacks
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, Y):
        """Fit the set encoders and decoder on the observed pairs.

        The fit uses torch's thread setting, but no more torch and BLAS
        threads than the cores other processes leave free when it starts; a
        count set through ``OMP_NUM_THREADS`` (or ``torch.set_num_threads(1)``)
        stands, and one thread makes refits with the same ``random_state``
        identical.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_columns)
            Index table with the context and perturbation columns; each
            (context, perturbation) pair at most once.
        Y : array-like or DataFrame of shape (n_rows, n_genes)
            Observed effects, row i for row i of ``X``.

        Returns
        -------
        self : C3TLRegressor
        """
        # Threads on cores that other processes keep busy wait on each other at
        # every step: the fit uses no more torch and BLAS threads than free cores.
        with limit_threads(fit_threads()):
            return self._fit(X, Y)

    def _fit(self, X, Y) -> C3TLRegressor:
        hidden_dims = check_hidden_dims(self.hidden_dims)
        device = check_device(self.device)

        c_codes, p_codes, Y_arr = self._validate_fit_data(X, Y)
        rng = check_random_state(self.random_state)
        valid = holdout_mask(
            c_codes, p_codes, self.validation_fraction, rng, name="validation_fraction",
            consequence="training runs every epoch max_epochs allows, without early stopping.",
        )
        train = ~valid
        targets = train & self._encodable(c_codes, p_codes, train)
        if not targets.any():
            raise ValueError(
                "No observed pair can be predicted from the others: every perturbation "
                "needs observations in at least two contexts."
            )
        # each training row's position inside the encoder's observation buffers
        rows = np.where(train, np.cumsum(train) - 1, -1)
        pairs = query_pairs(c_codes, p_codes, rows)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        # the sub-fits run first, so that a checkpoint callback ends on the final fit
        try:
            blend = self._fit_fallback_weights(X, Y_arr, c_codes, p_codes, rng)
        except (KeyboardInterrupt, TrainingDivergedError, MemoryError):
            # a sub-fit stopped: no half-fitted model is left behind, as for the final fit
            discard_fitted(self)
            raise
        Y_net = self._fit_basis(Y_arr, p_codes, train, seed)

        devices = []
        if device.type == "cuda":
            devices = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            self.net_ = self.make_net(**self._net_data_params(hidden_dims, valid, pairs, Y_net,
                                                              int(targets.sum())))
            # training encodes from the training pairs only
            self.net_.set_observations(torch.from_numpy(Y_net[train]), c_codes[train],
                                       p_codes[train])
            fit_guarded(self, self.net_, pairs[targets], Y_net[targets])

        # prediction encodes from every observation, the validation pairs included
        self.net_.set_observations(torch.from_numpy(Y_net), c_codes, p_codes)
        self.validation_mask_ = valid
        self.history_ = self.net_.history
        self.n_epochs_ = len(self.history_)
        self._fit_readout(Y_arr, Y_net, c_codes, p_codes, seed)
        self._fit_fallback_members(X, Y_arr, blend)
        return self

    def _fit_fallback_weights(self, X, Y_arr, c_codes, p_codes, rng):
        """The blend's weights from sub-fits (``None`` when the fallback is off or cannot run)."""
        if self.fallback is None or (
            self.fallback == "auto" and len(c_codes) > AUTO_FALLBACK_MAX_PAIRS
        ):
            return None
        return fit_fallback(self, X, Y_arr, c_codes, p_codes, rng)

    def _fit_fallback_members(self, X, Y_arr, blend) -> None:
        """The baselines of the blend, fitted on all the fit data."""
        self.fallback_weights_ = self.fallback_mse_ = self.fallback_estimators_ = None
        if blend is None:
            return
        self.fallback_weights_, self.fallback_mse_ = blend.weights, blend.mse
        members = fallback_baselines(self.context_col, self.perturbation_col)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # their notices repeat fit's
            self.fallback_estimators_ = [
                m.fit(X, Y_arr) if w > 0 else None
                for m, w in zip(members, blend.weights[1:], strict=True)
            ]

    def _fit_readout(self, Y_genes, Y_net, c_codes, p_codes, seed: int) -> None:
        """Read-out statistics from every fit pair's held-out residual (see ``adaptation``).

        ``Y_net`` holds the effects as the network reads them (the rows in the
        basis), the observations it encodes from; ``seed`` (fit's) seeds the
        PCA of the read-out's features where it needs one of its own.
        """
        self.readout_ = self.readout_features_ = None
        if self.adaptation is None:
            return
        module = self.net_.module_.eval()
        with torch.no_grad():
            tables = module.codes()
            held_out, z_rows = module.held_out_fit(tables)
        F, F_rows = self._readout_features(Y_genes, Y_net, p_codes, tables.z,
                                           z_rows.cpu().numpy(), seed)
        # standardised over perturbations, so that one penalty suits every feature
        F, mean, sd = standardise_features(F)
        self.readout_features_ = F.astype(np.float32)
        F_rows = (F_rows - mean) / sd
        held_out = held_out.cpu().numpy()
        n_p = np.bincount(p_codes, minlength=len(self.perturbations_))
        # a perturbation measured only here has no prediction without its own pair
        usable = np.flatnonzero(n_p[p_codes] > 1)
        self.readout_ = ContextReadout(len(self.contexts_), F_rows.shape[1], self.n_genes_)
        # Many small dense problems: BLAS threads would only contend with the
        # OpenMP threads torch leaves spinning after training (several times slower).
        with threadpool_limits(1, user_api="blas"):
            self._add_fit_residuals(held_out, F_rows, Y_genes, Y_net, (c_codes, p_codes), usable)

    def _add_fit_residuals(self, held_out, F_rows, Y_genes, Y_net, codes, usable):
        """Add each context's held-out residuals; its penalty is chosen on all of them at once.

        The residuals are formed in float32, the precision the read-out keeps
        them in: a float64 copy at every step doubles this step's memory
        traffic, one of the larger costs of a big fit outside its epochs.
        """
        c_codes, p_codes = codes
        n_p = np.bincount(p_codes, minlength=len(self.perturbations_))
        for c in np.unique(c_codes[usable]):
            block = usable[c_codes[usable] == c]
            p = p_codes[block]
            fit = Y_genes[block]
            residuals = fit - (held_out[block] if self.pca_ is None
                               else self.pca_.inverse_transform(held_out[block]))
            if self.mean_outside_basis_ is not None:
                # the pair's prediction outside the basis is its perturbation's mean
                # there without the pair itself, (k M - own) / (k - 1), shrunk for
                # the k - 1 other contexts
                k = n_p[p][:, None].astype(np.float32)
                own = fit - self.pca_.inverse_transform(Y_net[block])
                loo = leave_one_out_mean(self.mean_outside_basis_[p], k, own)
                residuals -= self._outside_weight(k - 1).astype(np.float32) * loo
            self.readout_.add(F_rows[block], residuals, c_codes[block])

    def _readout_features(self, Y_genes, Y_net, p_codes, z, z_rows, seed):
        """Read-out features per perturbation, and per fit pair without the pair.

        The features are the latent perturbation codes and the principal
        components of the perturbations' mean effects. A fit pair's residual
        is regressed on its perturbation's features computed without the
        pair itself (its own effect would otherwise leak into the features
        and the read-out would learn from a signal that unmeasured pairs
        never have).
        """
        means = mean_effect_components(
            Y_genes, p_codes, len(self.perturbations_), random_state=seed,
            # the network's observations are already the rows in its basis
            basis=None if self.pca_ is None else (self.pca_, Y_net),
        )
        latent = z[:, : self.latent_dim].cpu().numpy().astype(np.float64)
        return (np.hstack([latent, means.per_perturbation]),
                np.hstack([z_rows.astype(np.float64), means.per_row]))

    def _to_genes(self, pred, p_codes) -> np.ndarray:
        """Network outputs in gene space (float64), with the mean outside the basis added."""
        pred = np.asarray(pred, dtype=np.float64)
        if self.pca_ is None:
            return pred
        out = self.pca_.inverse_transform(pred)
        if self.mean_outside_basis_ is not None:
            out += self.outside_shrinkage_[p_codes, None] * self.mean_outside_basis_[p_codes]
        return out

    def _fit_basis(self, Y_arr, p_codes, train, seed) -> np.ndarray:
        """Fit ``pca_`` and the mean outside it; return the effects the network reads."""
        self.pca_ = self.mean_outside_basis_ = None
        self.outside_variances_ = self.outside_shrinkage_ = None
        if self.n_components is None or self.n_components >= min(Y_arr.shape):
            return Y_arr
        # imported here: a loaded model predicts without it (it would slow `c3tl predict`)
        from sklearn.decomposition import PCA

        # Y_arr[train] is a copy of our own: the PCA may centre it in place
        self.pca_ = PCA(self.n_components, copy=False, random_state=seed).fit(Y_arr[train])
        coefs = self.pca_.transform(Y_arr).astype(np.float32, copy=False)
        if self.residual:
            # The network decodes a correction to the perturbation mean; the part
            # of each mean outside the basis is added at predict (means commute
            # with the affine projection), weighted by how well it transfers.
            n_pert = len(self.perturbations_)
            mean_y, counts = segment_means(p_codes, n_pert, Y_arr)
            mean_coefs, _ = segment_means(p_codes, n_pert, coefs)
            self.mean_outside_basis_ = (
                mean_y - self.pca_.inverse_transform(mean_coefs.astype(np.float32))
            ).astype(np.float32)
            self.outside_variances_ = self._outside_variances(Y_arr, coefs, p_codes, counts)
            self.outside_shrinkage_ = self._outside_weight(counts)
        return coefs

    def _outside_weight(self, n_contexts) -> np.ndarray:
        """Weight of a perturbation's mean outside the basis over ``n_contexts`` contexts."""
        if not self.shrink_outside_basis:
            return np.ones(np.shape(n_contexts))
        return _shrinkage(n_contexts, *self.outside_variances_)

    def _outside_variances(self, Y_arr, coefs, p_codes, counts) -> np.ndarray:
        """Shared (signal) and context-own (noise) variance of the effects outside the basis.

        For a pair with ``own`` outside the basis and ``m``, its perturbation's
        mean outside the basis over the ``k - 1`` other contexts, the moments
        ``E[own . m] = s`` and ``E||own - m||^2 = v (1 + 1 / (k - 1))`` give
        both, summed over genes and averaged over the pairs.
        """
        rows = np.flatnonzero(counts[p_codes] > 1)
        signal = noise = 0.0
        for part in row_blocks(len(rows), Y_arr.shape[1]):
            block = rows[part]
            # float32 counts keep every step in the effects' float32 (the sums are float64)
            k = counts[p_codes[block]][:, None].astype(np.float32)
            own = Y_arr[block] - self.pca_.inverse_transform(coefs[block])
            other = leave_one_out_mean(self.mean_outside_basis_[p_codes[block]], k, own)
            signal += float(np.sum(own * other, dtype=np.float64))
            noise += float(np.sum((own - other) ** 2 / (1 + 1 / (k - 1)), dtype=np.float64))
        return np.array([signal, noise]) / max(len(rows), 1)

    def _encodable(self, c_codes, p_codes, train) -> np.ndarray:
        """Training rows whose perturbation and context keep other observations.

        Under leave-the-target-out training a pair seen in only one context has
        no perturbation code left once its own row is removed (and likewise a
        context with one pair), so it can be encoded from but not predicted.
        """
        if not self.leave_target_out:
            return train.copy()
        n_p = np.bincount(p_codes[train], minlength=len(self.perturbations_))
        n_c = np.bincount(c_codes[train], minlength=len(self.contexts_))
        return (n_p[p_codes] > 1) & (n_c[c_codes] > 1)

    def _net_data_params(self, hidden_dims, valid, pairs, Y_arr, n_targets) -> dict:
        """The net's parameters that depend on the fit data (sizes, split, weights)."""
        params: dict = {"callbacks": with_training_guard(self.callbacks), "train_split": None}
        if valid.any():
            params["train_split"] = predefined_split(Dataset(pairs[valid], Y_arr[valid]))
            params["callbacks"].extend(self._validation_callbacks())
        params["callbacks"] = params["callbacks"] or None
        params["context_weight"] = None
        if self.context_balance > 0:
            n_ctx = np.bincount(pairs[~valid, CONTEXT], minlength=len(self.contexts_)).clip(min=1)
            params["context_weight"] = torch.as_tensor(
                n_ctx ** -float(self.context_balance), dtype=torch.float32
            )
        batch_size = n_targets if self.batch_size is None else self.batch_size
        batch_sets = batch_size < n_targets
        return {
            **params,
            "max_epochs": self._max_epochs(n_targets),
            "module__n_genes": Y_arr.shape[1],
            "module__n_contexts": len(self.contexts_),
            "module__n_perturbations": len(self.perturbations_),
            "module__hidden_dims": hidden_dims,
            "module__batch_sets": batch_sets,
            "batch_size": batch_size,
            "iterator_train__group_col": PERTURBATION if batch_sets else None,
        }

    def _max_epochs(self, n_targets: int) -> int:
        """The epoch limit of a fit on ``n_targets`` training pairs."""
        if self.max_epochs != "auto":
            return self.max_epochs
        budget = -(-AUTO_EPOCH_PAIRS // max(n_targets, 1))
        return min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, budget))

    def _validation_callbacks(self) -> list[tuple[str, object]]:
        """Early stopping, and the learning-rate schedule, on the validation loss."""
        if self.lr_schedule == "constant":
            return [("early_stopping", EarlyStopping(patience=self.patience, load_best=True))]
        return [
            # before early stopping: the rate is cut on the epoch's loss whatever stopping says
            ("lr_plateau", LRScheduler(
                "ReduceLROnPlateau", monitor="valid_loss", factor=PLATEAU_FACTOR,
                patience=PLATEAU_PATIENCE)),
            ("early_stopping", EarlyStopping(
                patience=self.patience, threshold=PLATEAU_THRESHOLD, threshold_mode="rel",
                load_best=True)),
        ]

    def make_net(self, **params) -> C3TLNet:
        """A new, uninitialised skorch net of this estimator's configuration.

        ``fit`` calls it with the parameters that depend on the data (the
        module's sizes, the validation split, the context weights); loading
        a model file calls it with the saved net's scalar parameters, so the
        classes (module, optimizer, iterators) always come from this version
        of the package and never from a file. ``params`` override the
        estimator's own settings.
        """
        settings = {
            "module__latent_dim": self.latent_dim,
            "module__hidden_dims": check_hidden_dims(self.hidden_dims),
            "module__dropout": self.dropout,
            "module__leave_target_out": self.leave_target_out,
            "module__residual": self.residual,
            "module__context_input": self.context_input,
            "module__context_keep_min": self.context_keep_min,
            "optimizer": torch.optim.AdamW,
            "optimizer__weight_decay": self.weight_decay,
            # one kernel per step, far faster than the loop on CPU (torch >= 2.4)
            "optimizer__fused": _FUSED_ADAMW,
            "lr": self.lr,
            # fit gives the bound "auto" chooses for its data
            "max_epochs": AUTO_MAX_EPOCHS if self.max_epochs == "auto" else self.max_epochs,
            "batch_size": self.batch_size,
            "iterator_train": TensorBatchIterator,
            "iterator_train__shuffle": True,
            "iterator_valid": TensorBatchIterator,
            "iterator_valid__batch_size": -1,
            "callbacks": with_training_guard(self.callbacks) or None,
            "train_split": None,
            "device": self.device,
            "verbose": self.verbose,
            **params,
        }
        if settings["module__context_input"] == "auto":
            # fit and a model file give the module's sizes; "auto" follows the contexts
            many = settings.get("module__n_contexts", 0) >= AUTO_DEPARTURE_MIN_CONTEXTS
            settings["module__context_input"] = "departure" if many else "effect"
        # the module's arguments in C3TLNetwork's order (messages list them so)
        module = {key: settings.pop(key) for key in _MODULE_ARGS if key in settings}
        return C3TLNet(C3TLNetwork, **module, **settings)

    # -------------------------------------------------------------- predict
    def predict(self, X, observed=None):
        """Predict the effect of each (context, perturbation) row of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table with the context and perturbation columns.
        observed : tuple (X_obs, Y_obs), optional
            Measurements made after fit, for example a handful of
            perturbations in a brand-new context: an index table and its
            effects, like the arguments of :meth:`fit`. Without any gradient
            step they update the codes of their contexts (new context labels
            included) and join the context read-out (see ``adaptation``),
            which is what carries most of what they say about a context the
            network never trained on. Perturbation codes stay those of fit;
            every perturbation in ``X_obs`` must have been seen in fit.

        Returns
        -------
        Y_pred : ndarray of shape (n_rows, n_genes), float64
            The network computes in float32; the read-out and the output are
            float64, like every estimator of the package.
        """
        Y_pred = self.predict_without_fallback(X, observed)
        if self.fallback_weights_ is None or self.fallback_weights_[0] == 1.0:
            return Y_pred
        return self._blend(X, Y_pred, observed)

    def _blend(self, X, Y_pred, observed) -> np.ndarray:
        """The network's prediction blended with the baselines' by ``fallback_weights_``."""
        members = self.fallback_estimators_
        # rows of the contexts that `observed` measures get baselines that know those
        # measurements; every other row keeps fit's, as its network codes do
        adapted = np.zeros(len(X), dtype=bool)
        if observed is not None:
            contexts, Y_obs, p_obs = self._validate_observed(observed)
            X_obs = pd.DataFrame({self.context_col: contexts,
                                  self.perturbation_col: self.perturbations_[p_obs]})
            adapted = np.isin(X[self.context_col].to_numpy(), contexts)
            refitted = refit_with_observed(members, X_obs, Y_obs)
        out = self.fallback_weights_[0] * Y_pred
        with warnings.catch_warnings():
            # an unseen context was announced once already, by the network's prediction
            warnings.simplefilter("ignore", UserWarning)
            for i, (weight, member) in enumerate(
                    zip(self.fallback_weights_[1:], members, strict=True)):
                if member is None:
                    continue
                if (~adapted).any():
                    out[~adapted] += weight * member.predict(X[~adapted])
                if adapted.any():
                    out[adapted] += weight * refitted[i].predict(X[adapted])
        return out

    def predict_without_fallback(self, X, observed=None, *,
                                 readout_observed: bool = True) -> np.ndarray:
        """The network's prediction with its read-out, before any blend with the baselines.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table with the context and perturbation columns.
        observed : tuple (X_obs, Y_obs), optional
            Post-fit measurements, as in :meth:`predict`: they update the
            codes of their contexts.
        readout_observed : bool, default=True
            Add ``observed`` to the context read-out too (as :meth:`predict`
            does); ``False`` keeps the read-out of fit, as
            :class:`~c3tl_sklearn.C3TLEnsemble` does with ``adapt_observed=False``.

        Returns
        -------
        Y_pred : ndarray of shape (n_rows, n_genes), float64
            :meth:`predict`'s output when ``fallback_weights_`` is ``None``.
        """
        c_codes, p_codes, contexts, perturbations = self._validate_predict_data(X)
        self._raise_unknown_perturbations(p_codes, perturbations)
        extra = None
        if observed is not None:
            extra, new_contexts = self._encode_observed(observed)
            # contexts first seen in `observed` get codes after the fitted ones
            new = encode_labels(contexts, new_contexts)
            c_codes = np.where((c_codes < 0) & (new >= 0), len(self.contexts_) + new, c_codes)
        warn_unknown_contexts(
            c_codes < 0, contexts, "they are predicted zero-shot from the mean context code. "
            "Measure a few perturbations in a context to predict it properly.",
        )
        module = self.net_.module_.eval()
        device = module.device
        pairs = torch.from_numpy(query_pairs(c_codes, p_codes))
        extra_t = tables = None
        with torch.no_grad():
            if extra is not None:
                extra_t = [t.to(device) for t in extra[:3]]
                # one encoding of every observation serves the prediction and the read-out
                tables = module.codes(extra_t)
            Y_pred = module.predict_pairs(pairs.to(device), extra_t, tables).cpu().numpy()
        Y_pred = self._to_genes(Y_pred, p_codes)
        if self.readout_ is None:
            return Y_pred
        readout, added = self.readout_, None
        if extra is not None and readout_observed:
            readout, added = self._observed_residuals(extra, extra_t, tables)
        Y_pred += apply_readout(readout, self.readout_features_, (c_codes, p_codes), added,
                                use_features=self.adaptation == "ridge")
        return Y_pred

    def _observed_residuals(self, extra, extra_t, tables):
        """Room in the fit read-out for post-fit measurements, and their held-out residuals."""
        _, c_obs, p_obs, Y_obs = extra
        module = self.net_.module_
        with torch.no_grad():
            held_out = module.held_out_extra(extra_t, tables)
        held_out = held_out.cpu().numpy()
        c_obs = c_obs.numpy()
        p_obs = p_obs.numpy()
        residuals = Y_obs - self._to_genes(held_out, p_obs)
        return self.readout_.extended(int(c_obs.max()) + 1), (c_obs, p_obs, residuals)

    def _encode_observed(self, observed):
        """Validate post-fit measurements.

        Returns encoder tensors ``(x, context, perturbation)`` followed by the
        effects in gene space, and the labels of the contexts new to the model.
        """
        contexts, Y_arr, p_codes = self._validate_observed(observed)
        c_codes = encode_labels(contexts, self.contexts_)
        new_contexts = unique_labels(contexts[c_codes < 0])
        new = encode_labels(contexts, new_contexts)
        c_codes = np.where(c_codes < 0, len(self.contexts_) + new, c_codes)
        x = Y_arr if self.pca_ is None else self.pca_.transform(Y_arr).astype(np.float32)
        extra = (torch.from_numpy(x), torch.from_numpy(c_codes), torch.from_numpy(p_codes), Y_arr)
        return extra, new_contexts
