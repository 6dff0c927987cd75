"""The C3TL set-encoder network (paper, section 4) as a plain ``torch.nn.Module``.

The module holds the *observations* it encodes from (one effect vector per
observed (context, perturbation) pair) as buffers, and maps a batch of query
pairs to predicted effects:

    z_p   = mean over observed (g, p) of Theta_z(x_p^g, g)
    psi_c = mean over observed (c, q) of Theta_psi(x_q^c, q)
    x_hat = Gamma(z_p + psi_c)            (+ mean_g x_p^g with ``residual``)

With ``context_input="departure"`` the context encoder reads
``x_q^c - mean_{g != c} x_q^g`` instead of ``x_q^c``.

Everything the user sees (labels, validation, training) lives in
:class:`c3tl_sklearn.C3TLRegressor`; this file only knows integer codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ._groups import leave_one_out_mean

__all__ = ["CONTEXT", "CONTEXT_INPUTS", "PERTURBATION", "ROW", "C3TLNetwork", "CodeTables",
           "HeldOut", "mlp", "query_pairs"]

#: Columns of the ``(n, 3)`` long tensor of query pairs that ``forward`` takes:
#: the context code, the perturbation code and the pair's row in the
#: observation buffers (-1 when the pair is not among the observations).
CONTEXT, PERTURBATION, ROW = 0, 1, 2

#: What the context encoder ``Theta_psi`` reads of each observation (see C3TLNetwork).
CONTEXT_INPUTS = ("effect", "departure")


def query_pairs(contexts, perturbations, rows=None) -> np.ndarray:
    """The ``(n, 3)`` int64 query-pair array of the codes (``rows`` default -1)."""
    rows = np.full(len(contexts), -1) if rows is None else rows
    return np.column_stack([contexts, perturbations, rows]).astype(np.int64)


class CodeTables(NamedTuple):
    """What :meth:`C3TLNetwork.codes` returns: the code tables and the counts behind them."""

    z: torch.Tensor  #: (n_perturbations, width) perturbation codes (+ mean effect)
    psi: torch.Tensor  #: (n_context_codes, latent_dim) context codes
    n_z: torch.Tensor  #: observations behind each row of ``z``
    n_psi: torch.Tensor  #: observations behind each row of ``psi``


class HeldOut(NamedTuple):
    """What :meth:`C3TLNetwork.held_out_fit` returns."""

    predictions: torch.Tensor  #: (n_observations, n_outputs), each row left out of its means
    codes: torch.Tensor  #: (n_observations, latent_dim) each row's perturbation code without it


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU and dropout between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(pairwise(sizes)):
        if i > 0:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def _segment_sum(values: torch.Tensor, segment: torch.Tensor, n_segments: int, weight=None):
    """Sum of ``values`` rows per segment (zero where empty) and the row counts."""
    if weight is not None:
        values = values * weight[:, None]
    sums = values.new_zeros(n_segments, values.shape[1]).index_add_(0, segment, values)
    counts = torch.bincount(segment, weights=weight, minlength=n_segments).to(values.dtype)
    return sums, counts


class C3TLNetwork(nn.Module):
    """Set encoders for perturbations and contexts and a decoder of their sum.

    Parameters
    ----------
    n_genes : int
        Width of the effect vectors.
    n_contexts, n_perturbations : int
        Sizes of the label vocabularies (codes ``0 .. n - 1``).
    latent_dim : int, default=64
        Width of the shared latent space of ``z_p`` and ``psi_c``.
    hidden_dims : sequence of int, default=(256,)
        Hidden widths of each encoder; the decoder mirrors them.
    dropout : float, default=0.0
        Dropout after each hidden activation.
    leave_target_out : bool, default=True
        In training mode, a query pair whose own observation is among the
        encoded ones is removed from both of its means, so training matches
        prediction for unmeasured pairs (see DESIGN.md, section 3).
    residual : bool, default=True
        Add the perturbation's mean observed effect to the decoder output, so
        the network learns how a context departs from it. The mean uses the
        same observations as ``z_p`` (the target's own left out in training).
    context_keep_min : float, default=1.0
        In training mode, each step builds every context code from a random
        subset of the context's observations, keeping a fraction drawn
        uniformly from ``[context_keep_min, 1]``. Below 1 this prepares the
        context encoder for contexts with few measurements.
    batch_sets : bool, default=False
        In training mode, encode only the observations of the perturbations
        that occur in the batch of query pairs, rather than every observation.
        Meant for batches that hold whole perturbations (all their query
        pairs): perturbation codes are then exact and context codes are means
        over the batch's pairs of each context, so a step costs in proportion
        to the batch rather than to the whole data set.
    context_input : {"effect", "departure"}, default="effect"
        What ``Theta_psi`` reads of an observation ``x_q^c``: the effect
        itself (the paper), or its departure from the mean effect of ``q``
        in the other contexts that measured it (zero where none did).
        Observations passed as ``extra`` depart from the mean of all stored
        observations of their perturbation, which they are not among. A
        context code then describes how the context differs from the others
        on the perturbations it measured, which the paper's encoder has to
        learn by cancelling each perturbation's mean through its embedding,
        an embedding that a step of whole-perturbation batches updates once
        per epoch.

    Notes
    -----
    The identity inputs of the paper (one-hot context for ``Theta_z``, one-hot
    perturbation for ``Theta_psi``) enter as embeddings added to the first
    linear layer, which is the same function without a C- or P-wide input. The
    first projections of both encoders read the same effect vectors, so they
    are one ``Linear(n_genes, 2 * hidden)``: a single pass over the
    observation matrix per forward.

    The forward input is a long tensor of shape ``(batch, 3)`` (see
    :func:`query_pairs`): context code, perturbation code and the row of the
    pair in the observation buffers (-1 if it is not observed). A context
    code of -1, or a context without observations, is encoded as the mean of
    the observed context codes (zero-shot).
    """

    # Observations per block when encoding without autograd: a block's activations stay
    # in the CPU's cache, which one pass over tens of thousands of observations does not.
    chunk_rows = 4096

    def __init__(
        self,
        n_genes: int,
        n_contexts: int,
        n_perturbations: int,
        latent_dim: int = 64,
        hidden_dims: Sequence[int] = (256,),
        dropout: float = 0.0,
        leave_target_out: bool = True,
        residual: bool = True,
        context_keep_min: float = 1.0,
        batch_sets: bool = False,
        context_input: str = "effect",
    ):
        super().__init__()
        if context_input not in CONTEXT_INPUTS:
            raise ValueError(f"context_input must be one of {CONTEXT_INPUTS}; got "
                             f"{context_input!r}.")
        hidden_dims = tuple(hidden_dims)
        h0 = hidden_dims[0] if hidden_dims else latent_dim
        self.n_contexts = n_contexts
        self.n_perturbations = n_perturbations
        self.latent_dim = latent_dim
        self.leave_target_out = leave_target_out
        self.residual = residual
        self.context_keep_min = context_keep_min
        self.batch_sets = batch_sets
        self.context_input = context_input
        self.input_proj = nn.Linear(n_genes, 2 * h0)
        # On the meta device (a model file's shapes are checked there) nothing is drawn:
        # torch draws normal_ on meta tensors through its Python reference, which
        # imports torch._dynamo, seconds of a `c3tl predict`. Elsewhere the draws, and
        # so every seeded fit, stay as they were.
        meta = self.input_proj.weight.is_meta
        self.context_embedding = nn.Embedding(  # identity input of Theta_z
            n_contexts, h0, _weight=torch.empty(n_contexts, h0) if meta else None)
        self.perturbation_embedding = nn.Embedding(  # of Theta_psi
            n_perturbations, h0, _weight=torch.empty(n_perturbations, h0) if meta else None)
        for emb in (self.context_embedding, self.perturbation_embedding):
            if not meta:
                nn.init.normal_(emb.weight, std=0.02)
        tail = (h0, *hidden_dims[1:], latent_dim)
        self.theta_z = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), mlp(tail, dropout))
        self.theta_psi = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), mlp(tail, dropout))
        self.gamma = mlp((latent_dim, *reversed(hidden_dims), n_genes), dropout)
        empty = torch.empty(0, dtype=torch.long)
        self.register_buffer("obs_x", torch.empty(0, n_genes))
        self.register_buffer("obs_context", empty)
        self.register_buffer("obs_perturbation", empty.clone())

    @property
    def device(self) -> torch.device:
        """Where the weights (and the observation buffers) live."""
        return self.input_proj.weight.device

    def set_observations(self, x, context, perturbation) -> None:
        """Replace the observed effects the encoders average over."""
        device = self.input_proj.weight.device
        self.obs_x = torch.as_tensor(x, dtype=self.input_proj.weight.dtype, device=device)
        self.obs_context = torch.as_tensor(context, dtype=torch.long, device=device)
        self.obs_perturbation = torch.as_tensor(perturbation, dtype=torch.long, device=device)

    # ----------------------------------------------------------- encoders
    def perturbation_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum of the stored observations per perturbation code, and their count."""
        return _segment_sum(self.obs_x, self.obs_perturbation, self.n_perturbations)

    def encode_rows(self, x=None, context=None, perturbation=None, *, stored=True,
                    sums=None):
        """Per-observation outputs of ``Theta_z`` and ``Theta_psi``, (n_obs, latent) each.

        Defaults to the stored observations. A context code outside
        ``0 .. n_contexts - 1`` (a context unknown to the network) gets no
        context embedding in ``Theta_z``. With ``context_input="departure"``,
        ``stored`` says whether the rows are among the stored observations
        (each then departs from the mean of its perturbation's *other*
        stored observations), and ``sums`` is :meth:`perturbation_sums` (or
        the same sums over a set of whole perturbations that holds the
        rows), computed when not given.
        """
        if x is None:
            x, context, perturbation = self.obs_x, self.obs_context, self.obs_perturbation
        if self.context_input == "effect":
            hz, hpsi = self.input_proj(x).chunk(2, dim=1)
        else:
            total, count = self.perturbation_sums() if sums is None else sums
            total, count = total[perturbation], count[perturbation, None]
            if stored:
                total, count = total - x, count - 1
            departure = torch.where(count > 0, x - total / count.clamp(min=1), 0.0)
            weight_z, weight_psi = self.input_proj.weight.chunk(2, dim=0)
            bias_z, bias_psi = self.input_proj.bias.chunk(2)
            hz = nn.functional.linear(x, weight_z, bias_z)
            hpsi = nn.functional.linear(departure, weight_psi, bias_psi)
        known = (context >= 0) & (context < self.n_contexts)
        ctx_emb = self.context_embedding(torch.where(known, context, 0))
        if not bool(known.all()):  # the mask costs a pass over the rows: only when needed
            ctx_emb = known[:, None].to(hz.dtype) * ctx_emb
        hz = self.theta_z(hz + ctx_emb)
        hpsi = self.theta_psi(hpsi + self.perturbation_embedding(perturbation))
        return hz, hpsi

    def codes(self, extra=None) -> CodeTables:
        """Code tables ``z`` (n_perturbations, .) and ``psi`` (n_context_codes, latent).

        Parameters
        ----------
        extra : tuple of tensors (x, context, perturbation), optional
            Further observations that inform the context codes only (no
            gradient step involved). Their context codes may go beyond
            ``n_contexts - 1`` for contexts the network has never seen; the
            returned ``psi`` table then has a row for each.

        Returns
        -------
        CodeTables
            ``z`` and ``psi`` with the number of observations behind each row.

        Notes
        -----
        Contexts without observations get the mean of the observed context
        codes; perturbations without observations a zero code. With
        ``residual=True`` each row of ``z`` is followed by the perturbation's
        mean observed effect.
        """
        n_ctx = self.n_contexts
        sources = [(self.obs_x, self.obs_context, self.obs_perturbation, True)]
        if extra is not None:
            x_e, c_e, p_e = extra
            sources.append((x_e, c_e, p_e, False))
            n_ctx = max(n_ctx, int(c_e.max()) + 1) if len(c_e) else n_ctx
        x0 = self.obs_x
        width_z = self.latent_dim + (x0.shape[1] if self.residual else 0)
        sum_z = x0.new_zeros(self.n_perturbations, width_z)
        n_z = x0.new_zeros(self.n_perturbations)
        sum_psi = x0.new_zeros(n_ctx, self.latent_dim)
        n_psi = x0.new_zeros(n_ctx)
        reference = self.perturbation_sums() if self.context_input == "departure" else None
        for x, ctx, pert, informs_z in sources:
            # Without autograd nothing needs the activations afterwards, so on a
            # CPU rows go through in blocks of `chunk_rows`.
            one_pass = torch.is_grad_enabled() or x.device.type != "cpu"
            step = max(len(x), 1) if one_pass else self.chunk_rows
            for start in range(0, len(x), step):
                block = slice(start, start + step)
                hz, hpsi = self.encode_rows(x[block], ctx[block], pert[block],
                                            stored=informs_z, sums=reference)
                if informs_z:
                    if self.residual:
                        hz = torch.cat([hz, x[block]], dim=1)
                    sums, counts = _segment_sum(hz, pert[block], self.n_perturbations)
                    sum_z, n_z = sum_z + sums, n_z + counts
                sums, counts = _segment_sum(hpsi, ctx[block], n_ctx)
                sum_psi, n_psi = sum_psi + sums, n_psi + counts
        z = sum_z / n_z.clamp(min=1)[:, None]
        psi = sum_psi / n_psi.clamp(min=1)[:, None]
        seen = n_psi > 0
        psi = torch.where(seen[:, None], psi, psi[seen].mean(0, keepdim=True))
        return CodeTables(z, psi, n_z, n_psi)

    def held_out_fit(self, tables: CodeTables | None = None) -> HeldOut:
        """Each stored observation predicted with itself left out of both of its means.

        This is what the network predicts for a pair it has not measured,
        evaluated on pairs that it has: the residuals of these predictions are
        held out from the codes (though not from the weights), which is what
        the context read-out of :mod:`c3tl_sklearn.adaptation` is fitted on.
        An observation that is the only one of its perturbation keeps it
        (there is nothing else to encode the perturbation from), and the only
        one of its context gets the mean context code.

        Parameters
        ----------
        tables : CodeTables, optional
            ``codes()``, when the caller has it.

        Returns
        -------
        HeldOut
            The predictions, and each row's perturbation code (latent part)
            as used in its prediction, that is with the row left out.
        """
        tables = self.codes() if tables is None else tables
        source = (self.obs_x, self.obs_context, self.obs_perturbation, True)
        return HeldOut(*self._held_out(source, tables))

    def held_out_extra(self, extra, tables: CodeTables | None = None) -> torch.Tensor:
        """Post-fit observations ``extra`` predicted with each left out of its context mean.

        ``extra`` is a tuple of tensors ``(x, context, perturbation)`` as in
        :meth:`codes`; it informs context codes only, so only its context mean
        leaves each row out. ``tables`` is ``codes(extra)`` when the caller has it.
        """
        tables = self.codes(extra) if tables is None else tables
        return self._held_out((*extra, False), tables)[0]

    def _held_out(self, source, tables: CodeTables):
        """Held-out predictions and perturbation codes of one source of observations."""
        z, psi, n_z, n_psi = tables
        psi_seen = psi[n_psi > 0].mean(0)
        x, ctx, pert, informs_z = source
        reference = self.perturbation_sums() if self.context_input == "departure" else None
        out, codes = [], []
        for start in range(0, len(x), self.chunk_rows):
            block = slice(start, start + self.chunk_rows)
            xb, cb, pb = x[block], ctx[block], pert[block]
            hz, hpsi = self.encode_rows(xb, cb, pb, stored=informs_z, sums=reference)
            zb = z[pb]
            if informs_z:
                if self.residual:
                    hz = torch.cat([hz, xb], dim=1)
                k = n_z[pb][:, None]
                zb = torch.where(k > 1, leave_one_out_mean(zb, k, hz), zb)
            k = n_psi[cb][:, None]
            psib = torch.where(k > 1, leave_one_out_mean(psi[cb], k, hpsi),
                               psi_seen)
            out.append(self.decode(zb, psib))
            codes.append(zb[:, : self.latent_dim])
        if not out:
            out, codes = [self.obs_x.new_zeros(0, self.obs_x.shape[1])], [z[:0, : self.latent_dim]]
        return torch.cat(out), torch.cat(codes)

    def decode(self, z: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Effects from perturbation codes ``z`` and context codes ``psi``.

        With ``residual=True``, ``z`` carries the perturbation's mean effect in
        its last ``n_genes`` columns (as :meth:`codes` returns it).
        """
        if not self.residual:
            return self.gamma(z + psi)
        return z[:, self.latent_dim :] + self.gamma(z[:, : self.latent_dim] + psi)

    def predict_pairs(self, pairs: torch.Tensor, extra=None,
                      tables: CodeTables | None = None) -> torch.Tensor:
        """Predictions from all observations (plus ``extra``), no pair hidden.

        A context code of -1 is predicted from the mean observed context code.
        ``tables`` is ``codes(extra)`` when the caller has it already.
        """
        ctx, pert = pairs[:, CONTEXT], pairs[:, PERTURBATION]
        z_table, psi_table = (self.codes(extra) if tables is None else tables)[:2]
        psi_unknown = psi_table.mean(0)
        psi = torch.where((ctx >= 0)[:, None], psi_table[ctx.clamp(min=0)], psi_unknown)
        return self.decode(z_table[pert], psi)

    # ------------------------------------------------------------ forward
    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        pairs = pairs.long()
        if not self.training:
            return self.predict_pairs(pairs)

        ctx, pert, row = pairs[:, CONTEXT], pairs[:, PERTURBATION], pairs[:, ROW]
        x, obs_ctx, obs_pert = self.obs_x, self.obs_context, self.obs_perturbation
        if self.batch_sets:
            # Encode only the observations of the batch's perturbations: their
            # codes stay exact, and each context code is the mean over the
            # batch's pairs of that context: a sample of the full mean, at a
            # fraction of the cost of a pass over every observation.
            in_batch = torch.zeros(self.n_perturbations, dtype=torch.bool, device=x.device)
            in_batch[pert] = True
            rows = torch.nonzero(in_batch[obs_pert]).squeeze(1)
            position = torch.full_like(obs_pert, -1)
            position[rows] = torch.arange(len(rows), device=x.device)
            x, obs_ctx, obs_pert = x[rows], obs_ctx[rows], obs_pert[rows]
            row = torch.where(row >= 0, position[row.clamp(min=0)], row)
        # the rows encoded hold every observation of their perturbations (all rows, or
        # the batch's whole perturbations), so their own sums give the departures
        reference = (_segment_sum(x, obs_pert, self.n_perturbations)
                     if self.context_input == "departure" else None)
        hz, hpsi = self.encode_rows(x, obs_ctx, obs_pert, sums=reference)
        if self.residual:
            # raw effects ride along with the perturbation codes: one segment sum
            hz = torch.cat([hz, x], dim=1)
        keep = None
        if self.context_keep_min < 1.0:
            frac = torch.empty(self.n_contexts, device=hz.device).uniform_(
                self.context_keep_min, 1.0
            )
            keep = (torch.rand(len(obs_ctx), device=hz.device) < frac[obs_ctx]).to(hz.dtype)
        sum_z, n_z = _segment_sum(hz, obs_pert, self.n_perturbations)
        sum_psi, n_psi = _segment_sum(hpsi, obs_ctx, self.n_contexts, keep)
        # index_select rather than indexing: its backward is an index_add_, where
        # indexing's is an accumulating index_put_, far slower on a CPU
        s_z, c_z = sum_z.index_select(0, pert), n_z[pert]
        s_psi, c_psi = sum_psi.index_select(0, ctx), n_psi[ctx]
        if self.leave_target_out:
            r = row.clamp(min=0)
            own_z = (row >= 0).to(hz.dtype)
            own_psi = own_z if keep is None else own_z * keep[r]
            s_z = s_z - own_z[:, None] * hz.index_select(0, r)
            s_psi = s_psi - own_psi[:, None] * hpsi.index_select(0, r)
            c_z = c_z - own_z
            c_psi = c_psi - own_psi
        z = s_z / c_z.clamp(min=1)[:, None]
        psi = s_psi / c_psi.clamp(min=1)[:, None]
        if self.batch_sets or keep is not None:
            # a context left with no pair to encode from is predicted like an
            # unseen one: from the mean context code
            seen = n_psi > 0
            mean_psi = (sum_psi[seen] / n_psi[seen][:, None]).mean(0)
            psi = torch.where((c_psi > 0)[:, None], psi, mean_psi)
        return self.decode(z, psi)
