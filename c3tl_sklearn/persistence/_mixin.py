"""``PersistenceMixin``: the ``save`` and ``load`` methods of the package's estimators."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._decode import load
from ._encode import save
from ._format import _REGISTERED


class PersistenceMixin:
    """``save(path)`` and ``Cls.load(path)``: model files that load without pickle.

    Added to the package's estimators. The file format, what loading
    checks and what it refuses are described in :mod:`c3tl_sklearn.persistence`.
    Pickle keeps working as for any scikit-learn estimator.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTERED[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def save(self, path: str | os.PathLike) -> Path:
        """Write the estimator (fitted or not) to ``path`` as one safetensors file.

        Parameters
        ----------
        path : str or path-like
            File to write (replaced atomically if it exists); the usual
            suffix is ``.safetensors``.

        Returns
        -------
        path : pathlib.Path
            The file written.

        Raises
        ------
        ValueError
            If a parameter or fitted attribute cannot be stored without
            pickle (for example skorch ``callbacks`` or a label that is not a
            str, int, float, bool, None or tuple); the message names it.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from c3tl_sklearn import AdditiveBaseline
        >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
        >>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "additive.safetensors"
        >>> AdditiveBaseline().fit(X, Y).save(path).name
        'additive.safetensors'
        """
        return save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: Any = "cpu"):
        """Read an estimator written by :meth:`save`, without executing anything from the file.

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save`.
        device : str or torch.device, default="cpu"
            Where the network weights go; every ``device`` parameter of the
            loaded model (ensemble members included) is set to it, so a model
            trained on a GPU loads on a CPU-only machine as it is. Models
            without network weights (the baselines) ignore it and load
            without importing torch.

        Returns
        -------
        estimator : instance of this class
            Predictions are identical to those of the saved model on the
            same device.

        Raises
        ------
        ValueError
            If the file is not a model file of this package, is of another
            format version, was modified or truncated, names a class that is
            not allowed, or holds another estimator class than ``cls``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from c3tl_sklearn import MeanBaseline
        >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
        >>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
        >>> path = MeanBaseline().fit(X, Y).save(pathlib.Path(tempfile.mkdtemp()) / "m")
        >>> MeanBaseline.load(path).predict(X).shape
        (30, 5)
        """
        return load(path, device=device, expected=cls)


