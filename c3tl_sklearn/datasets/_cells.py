"""Synthetic single cells: counts with gene programs whose response differs by context."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils import check_random_state

from ._cellmatrix import _cells_result
from ._checks import (
    check_fraction,
    check_non_negative,
    check_positive,
    check_positive_int,
)

__all__ = ["CellDesign", "make_synthetic_cells"]


@dataclass(frozen=True)
class CellDesign:
    """The generating model of :func:`make_synthetic_cells`: programs, contexts and counts.

    The sizes (contexts, perturbations, genes, cells per group) and the seed
    are the generator's own arguments; these are the knobs of the model
    behind the counts, grouped so that a variant of the default model is one
    value (``CellDesign(interaction=0.0)``: every effect transferable).

    Parameters
    ----------
    n_programs : int, default=30
        Gene programs; each gene belongs to about two programs' sparse support.
    programs_per_perturbation : int, default=3
        Programs a perturbation acts on (at most ``n_programs``).
    effect_scale : float, default=1.0
        Standard deviation of a perturbation's program activations (on the
        log rate).
    context_scale : float, default=0.5
        Standard deviation of a context's baseline deviation per gene (log rate).
    sensitivity_scale : float, default=0.6
        Standard deviation of the log of a context's program sensitivities.
    inactive_fraction : float, default=0.2
        Fraction of (context, program) pairs with sensitivity zero.
    null_fraction : float, default=0.1
        Fraction of perturbations without any effect.
    interaction : float, default=0.3
        Standard deviation of the pair-specific term, on 2% of the genes of
        every pair.
    library_size : float, default=4000.0
        Median total counts per cell (log-normal across cells, sd 0.3).
    dispersion : float, default=0.2
        Negative-binomial overdispersion (variance ``mu + dispersion * mu**2``).
    control_label : str, default="control"
        The label of the control cells in ``obs["perturbation"]``.

    Examples
    --------
    >>> from c3tl_sklearn.datasets import CellDesign, make_synthetic_cells
    >>> design = CellDesign(n_programs=5, interaction=0.0, control_label="NTC")
    >>> adata = make_synthetic_cells(2, 3, 40, n_cells=4, design=design, random_state=0)
    >>> adata.obs["perturbation"].cat.categories.tolist()
    ['NTC', 'pert0', 'pert1', 'pert2']
    """

    n_programs: int = 30
    programs_per_perturbation: int = 3
    effect_scale: float = 1.0
    context_scale: float = 0.5
    sensitivity_scale: float = 0.6
    inactive_fraction: float = 0.2
    null_fraction: float = 0.1
    interaction: float = 0.3
    library_size: float = 4000.0
    dispersion: float = 0.2
    control_label: str = "control"

    def __post_init__(self):
        # the checked values are stored as plain int/float/str (a frozen dataclass)
        def store(name, value):
            object.__setattr__(self, name, value)

        store("n_programs", check_positive_int("n_programs", self.n_programs))
        k_per = check_positive_int("programs_per_perturbation",
                                    self.programs_per_perturbation)
        if k_per > self.n_programs:
            raise ValueError(
                f"programs_per_perturbation={k_per} exceeds n_programs={self.n_programs}."
            )
        store("programs_per_perturbation", k_per)
        for name in ("effect_scale", "context_scale", "sensitivity_scale", "interaction",
                     "dispersion"):
            store(name, check_non_negative(name, getattr(self, name)))
        for name in ("inactive_fraction", "null_fraction"):
            store(name, check_fraction(name, getattr(self, name)))
        store("library_size", check_positive("library_size", self.library_size))
        store("control_label", str(self.control_label))


def make_synthetic_cells(n_contexts: int = 24, n_perturbations: int = 90, n_genes: int = 2000,
                         *, n_cells: int = 20, n_control_cells: int | None = None,
                         design: CellDesign | None = None, as_anndata: bool = True,
                         random_state=None):
    """Draw single-cell counts of perturbations in contexts (the Parse shape by default).

    The default shape is the paper's Parse PBMC set: 24 contexts x 90
    perturbations (plus controls) x 2,000 genes, here with ``n_cells`` cells
    per (context, perturbation) group. The generator is deliberately *not*
    C3TL's model (a perturbation code plus a context code through one shared
    network, as :func:`make_synthetic_perturbations` draws): effects act on
    the log rate of negative-binomial counts through gene programs,

    .. math::

        \\log \\mu_{cpg} = b_g + d_{cg} + \\sum_k a_{pk}\\, s_{ck}\\, L_{kg}
        + \\varepsilon_{cpg},

    where ``L`` (programs x genes) is sparse, ``a_p`` is a sparse program
    activation (``programs_per_perturbation`` programs; a ``null_fraction``
    of perturbations does nothing), ``s_c`` a context's multiplicative
    sensitivity to each program (log-normal, and zero for an
    ``inactive_fraction`` of (context, program) pairs: a pathway absent in
    a cell type), ``d_c`` a context's baseline and ``eps`` a pair-specific
    interaction on a few genes that no other pair can reveal. The
    interaction of perturbation and context is multiplicative, some of it is
    not transferable at all, and the measured effects are differences of
    log-normalised means of overdispersed counts with varying library sizes,
    so they are neither additive nor a sum of latent codes.

    Parameters
    ----------
    n_contexts, n_perturbations, n_genes : int, default=24, 90, 2000
        Contexts (cell types, donors), perturbations (controls excluded) and
        genes.
    n_cells : int, default=20
        Cells per (context, perturbation) group.
    n_control_cells : int, optional
        Control cells per context; ``None`` draws ``2 * n_cells``.
    design : CellDesign, optional
        The programs, the contexts' baselines and sensitivities, the
        perturbations' activations, the pair-specific interaction, the
        library sizes, the overdispersion and the control label; ``None`` is
        ``CellDesign()``.
    as_anndata : bool, default=True
        Return an :class:`anndata.AnnData` (needs the optional dependency
        anndata), else the matrix, the cell table and the gene names.
    random_state : int, RandomState instance or None
        Seed for reproducible draws.

    Returns
    -------
    adata : anndata.AnnData of shape (n_cells_total, n_genes)
        With ``as_anndata=True``. ``X``: CSR float32 raw counts (whole
        numbers; pseudo-bulk them with ``transform="normalize_log1p"``);
        ``obs``: ``context`` (``"ctx0"``, ...), ``perturbation``
        (``"pert0"``, ... or ``design.control_label``), ``batch`` (the context: one
        batch per context, as State's input layout asks for a batch column),
        all categorical, cells grouped by context then perturbation with the
        controls first; ``var_names``: ``gene0``, ...
    (X, obs, genes) : tuple
        With ``as_anndata=False``.

    Examples
    --------
    >>> from c3tl_sklearn.datasets import make_synthetic_cells
    >>> adata = make_synthetic_cells(3, 4, 50, n_cells=5, random_state=0)
    >>> adata.shape  # 3 contexts x (4 perturbations x 5 cells + 10 controls)
    (90, 50)
    >>> sorted(adata.obs["perturbation"].unique())
    ['control', 'pert0', 'pert1', 'pert2', 'pert3']
    """
    n_contexts = check_positive_int("n_contexts", n_contexts)
    n_perturbations = check_positive_int("n_perturbations", n_perturbations)
    n_genes = check_positive_int("n_genes", n_genes, minimum=2)
    n_cells = check_positive_int("n_cells", n_cells)
    n_control_cells = (2 * n_cells if n_control_cells is None
                       else check_positive_int("n_control_cells", n_control_cells))
    d = CellDesign() if design is None else design
    if not isinstance(d, CellDesign):
        raise TypeError(f"design must be a CellDesign or None; got {type(d).__name__}.")
    n_programs, k_per, control_label = d.n_programs, d.programs_per_perturbation, d.control_label
    pert_names = [f"pert{i}" for i in range(n_perturbations)]
    if control_label in pert_names:
        raise ValueError(f"control_label={control_label!r} is also a perturbation name.")
    rng = check_random_state(random_state)

    # gene programs: sparse loadings, each gene in about two programs
    support = rng.random_sample((n_programs, n_genes)) < min(1.0, 2.0 / n_programs)
    programs = np.where(support, rng.standard_normal((n_programs, n_genes)), 0.0)
    base = rng.normal(-np.log(n_genes), 1.2, size=n_genes)  # log share of a cell's counts
    baseline = d.context_scale * rng.standard_normal((n_contexts, n_genes))
    sensitivity = np.exp(d.sensitivity_scale * rng.standard_normal((n_contexts, n_programs)))
    sensitivity[rng.random_sample((n_contexts, n_programs)) < d.inactive_fraction] = 0.0
    activation = np.zeros((n_perturbations, n_programs))
    for p in range(n_perturbations):
        chosen = rng.choice(n_programs, size=k_per, replace=False)
        activation[p, chosen] = d.effect_scale * rng.standard_normal(k_per)
    activation[rng.random_sample(n_perturbations) < d.null_fraction] = 0.0

    n_inter = max(1, round(0.02 * n_genes))
    blocks, contexts, perturbations = [], [], []
    for c in range(n_contexts):
        groups = [(control_label, np.zeros(n_genes), n_control_cells)]
        shift = (activation * sensitivity[c]) @ programs  # (n_perturbations, n_genes)
        for p in range(n_perturbations):
            term = shift[p].copy()
            if d.interaction > 0:
                genes = rng.choice(n_genes, size=n_inter, replace=False)
                term[genes] += d.interaction * rng.standard_normal(n_inter)
            groups.append((pert_names[p], term, n_cells))
        for label, term, size in groups:
            log_rate = base + baseline[c] + term
            share = np.exp(log_rate - log_rate.max())
            share /= share.sum()
            libraries = d.library_size * np.exp(0.3 * rng.standard_normal(size))
            mu = libraries[:, None] * share[None, :]
            if d.dispersion > 0:  # gamma-Poisson: a negative binomial with this overdispersion
                mu = rng.gamma(1.0 / d.dispersion, d.dispersion * mu)
            counts = rng.poisson(mu).astype(np.float32)
            blocks.append(sparse.csr_matrix(counts))
            contexts += [f"ctx{c}"] * size
            perturbations += [label] * size

    X = sparse.vstack(blocks, format="csr", dtype=np.float32)
    ctx_levels = [f"ctx{c}" for c in range(n_contexts)]
    obs = pd.DataFrame(
        {
            "context": pd.Categorical(contexts, categories=ctx_levels),
            "perturbation": pd.Categorical(perturbations,
                                           categories=[control_label, *pert_names]),
            "batch": pd.Categorical(contexts, categories=ctx_levels),
        },
        index=pd.Index([f"cell{i}" for i in range(X.shape[0])], name="cell"),
    )
    genes = pd.Index([f"gene{j}" for j in range(n_genes)], name="gene")
    return _cells_result(X, obs, genes, as_anndata=as_anndata, caller="make_synthetic_cells")
