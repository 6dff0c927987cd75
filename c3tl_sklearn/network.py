"""The C3TL set-encoder network (paper, section 4) as a plain ``torch.nn.Module``.

The module holds the *observations* it encodes from (one effect vector per
observed (context, perturbation) pair) as buffers, and maps a batch of query
pairs to predicted effects:

    z_p   = mean over observed (g, p) of Theta_z(x_p^g, g)
    psi_c = mean over observed (c, q) of Theta_psi(x_q^c, q)
    x_hat = Gamma(z_p + psi_c)

Everything the user sees (labels, validation, training) lives in
:class:`c3tl_sklearn.C3TLRegressor`; this file only knows integer codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["C3TLNetwork", "mlp"]


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of the given sizes with GELU and dropout between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.GELU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


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
    dropout : float, default=0.1
        Dropout after each hidden activation.
    leave_target_out : bool, default=True
        In training mode, a query pair whose own observation is among the
        encoded ones is removed from both of its means, so training matches
        prediction for unmeasured pairs (see DESIGN.md, section 3).

    Notes
    -----
    The identity inputs of the paper (one-hot context for ``Theta_z``, one-hot
    perturbation for ``Theta_psi``) enter as embeddings added to the first
    linear layer, which is the same function without a C- or P-wide input. The
    first projections of both encoders read the same effect vectors, so they
    are one ``Linear(n_genes, 2 * hidden)``: a single pass over the
    observation matrix per forward.

    The forward input is a long tensor of shape ``(batch, 3)``: context code,
    perturbation code and the row of the pair in the observation buffers (-1
    if it is not observed). A context code of -1, or a context without
    observations, is encoded as the mean of the observed context codes
    (zero-shot).
    """

    def __init__(
        self,
        n_genes: int,
        n_contexts: int,
        n_perturbations: int,
        latent_dim: int = 64,
        hidden_dims: Sequence[int] = (256,),
        dropout: float = 0.1,
        leave_target_out: bool = True,
    ):
        super().__init__()
        hidden_dims = tuple(hidden_dims)
        h0 = hidden_dims[0] if hidden_dims else latent_dim
        self.n_contexts = n_contexts
        self.n_perturbations = n_perturbations
        self.leave_target_out = leave_target_out
        self.input_proj = nn.Linear(n_genes, 2 * h0)
        self.context_embedding = nn.Embedding(n_contexts, h0)  # identity input of Theta_z
        self.perturbation_embedding = nn.Embedding(n_perturbations, h0)  # of Theta_psi
        for emb in (self.context_embedding, self.perturbation_embedding):
            nn.init.normal_(emb.weight, std=0.02)
        tail = (h0, *hidden_dims[1:], latent_dim)
        self.theta_z = nn.Sequential(nn.GELU(), nn.Dropout(dropout), mlp(tail, dropout))
        self.theta_psi = nn.Sequential(nn.GELU(), nn.Dropout(dropout), mlp(tail, dropout))
        self.gamma = mlp((latent_dim, *reversed(hidden_dims), n_genes), dropout)
        empty = torch.empty(0, dtype=torch.long)
        self.register_buffer("obs_x", torch.empty(0, n_genes))
        self.register_buffer("obs_context", empty)
        self.register_buffer("obs_perturbation", empty.clone())

    def set_observations(
        self, x: torch.Tensor, context: torch.Tensor, perturbation: torch.Tensor
    ) -> None:
        """Replace the observed effects the encoders average over."""
        device = self.input_proj.weight.device
        self.obs_x = torch.as_tensor(x, dtype=self.input_proj.weight.dtype, device=device)
        self.obs_context = torch.as_tensor(context, dtype=torch.long, device=device)
        self.obs_perturbation = torch.as_tensor(perturbation, dtype=torch.long, device=device)

    def encode_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-observation encoder outputs ``Theta_z`` and ``Theta_psi``, (n_obs, latent)."""
        hz, hpsi = self.input_proj(self.obs_x).chunk(2, dim=1)
        hz = self.theta_z(hz + self.context_embedding(self.obs_context))
        hpsi = self.theta_psi(hpsi + self.perturbation_embedding(self.obs_perturbation))
        return hz, hpsi

    def _segment_sums(self, hz: torch.Tensor, hpsi: torch.Tensor):
        sum_z = hz.new_zeros(self.n_perturbations, hz.shape[1]).index_add_(
            0, self.obs_perturbation, hz
        )
        sum_psi = hpsi.new_zeros(self.n_contexts, hpsi.shape[1]).index_add_(
            0, self.obs_context, hpsi
        )
        n_z = torch.bincount(self.obs_perturbation, minlength=self.n_perturbations)
        n_psi = torch.bincount(self.obs_context, minlength=self.n_contexts)
        return sum_z, n_z.to(hz.dtype), sum_psi, n_psi.to(hz.dtype)

    def codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Code tables ``z`` (n_perturbations, latent) and ``psi`` (n_contexts, latent).

        Unobserved perturbations get a zero code; unobserved contexts get the
        mean of the observed context codes.
        """
        sum_z, n_z, sum_psi, n_psi = self._segment_sums(*self.encode_rows())
        z = sum_z / n_z.clamp(min=1)[:, None]
        psi = sum_psi / n_psi.clamp(min=1)[:, None]
        seen = n_psi > 0
        psi = torch.where(seen[:, None], psi, psi[seen].mean(0, keepdim=True))
        return z, psi

    def decode(self, z: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.gamma(z + psi)

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        pairs = pairs.long()
        ctx, pert, row = pairs[:, 0], pairs[:, 1], pairs[:, 2]
        if not self.training:
            # prediction and validation: every observation is encoded, no pair is hidden
            z_table, psi_table = self.codes()
            psi_unknown = psi_table.mean(0)  # the mean observed context code, for ctx == -1
            psi = torch.where((ctx >= 0)[:, None], psi_table[ctx.clamp(min=0)], psi_unknown)
            return self.decode(z_table[pert], psi)

        hz, hpsi = self.encode_rows()
        sum_z, n_z, sum_psi, n_psi = self._segment_sums(hz, hpsi)
        s_z, c_z = sum_z[pert], n_z[pert]
        s_psi, c_psi = sum_psi[ctx], n_psi[ctx]
        if self.leave_target_out:
            own = (row >= 0).to(hz.dtype)
            r = row.clamp(min=0)
            s_z = s_z - own[:, None] * hz[r]
            s_psi = s_psi - own[:, None] * hpsi[r]
            c_z = c_z - own
            c_psi = c_psi - own
        z = s_z / c_z.clamp(min=1)[:, None]
        psi = s_psi / c_psi.clamp(min=1)[:, None]
        return self.decode(z, psi)
