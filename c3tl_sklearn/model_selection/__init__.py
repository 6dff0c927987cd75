"""Cross-validation splitters that hold out cellular contexts or (context, perturbation) pairs.

The splitters are in ``_split``, :class:`StateSplit` (State's TOML split
files, read and written) in ``_state``; what they share (the integer-coded index
table, adaptation parts, the base classes) is in ``_base``.

Every splitter follows scikit-learn's protocol (``split(X, y=None, groups=None)``
yielding ``(train, test)`` integer index arrays, ``get_n_splits``), so it can be
passed as ``cv=`` to :func:`~sklearn.model_selection.cross_val_score`,
:class:`~sklearn.model_selection.GridSearchCV` and friends.

``X`` is the package's *index table*: a DataFrame with one row per observed
(context, perturbation) pair. When ``groups`` is given it supplies the context
label of every row (and ``X`` then only needs the perturbation column);
otherwise the context column of ``X`` is used.

Shared conventions
------------------
- **Scored pairs are never seen in the target context.** A test row's
  perturbation is always observed in at least one *training* row of another
  context, so a model can transfer it; rows that fail this are dropped (they
  are neither train nor test).
- **Adaptation rows.** A held-out context keeps an adaptation part in
  training: ``round(adaptation_fraction * n_c)`` of its ``n_c`` rows (rounded
  half up), at least 1 when ``adaptation_fraction > 0`` and ``n_c >= 2``, and
  at most ``n_c - 1`` so a test row is always left. A context with a single row
  contributes it to the test side. ``adaptation_fraction=0`` is zero-shot.
- **Nesting.** With the same integer ``random_state`` the rows of every context
  are put in the same random order (one permutation of all rows is the first
  draw of every splitter), and the adaptation part is a prefix of that order:
  a larger adaptation fraction always contains a smaller one's adaptation
  rows, whatever the other parameters.
- **Validation.** ``validation_fraction`` moves ``round(validation_fraction *
  n_adaptation)`` adaptation rows (at least 1 when the fraction is positive and
  there are at least 2 adaptation rows, at most ``n_adaptation - 1``) into a
  validation set, taken from the end of the adaptation prefix among rows whose
  perturbation is observed in a training context. ``split`` yields ``(train ∪
  validation, test)``; ``split_validation`` yields the ``(train, validation,
  test)`` triples. ``adaptation_fraction=0.1, validation_fraction=0.2`` is the
  paper's 8% / 2% / 90% protocol.
- **Randomness.** ``random_state`` follows scikit-learn: an int gives the same
  splits on every call; a ``RandomState`` instance or ``None`` gives new draws.
"""

from ._split import ContextKFold, LeaveOneContextOut, PerturbationHoldout, ScarcitySplit
from ._state import StateSplit

__all__ = [
    "ContextKFold",
    "LeaveOneContextOut",
    "PerturbationHoldout",
    "ScarcitySplit",
    "StateSplit",
]
