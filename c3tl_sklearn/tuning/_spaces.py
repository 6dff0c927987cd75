"""Search spaces: the registry of default spaces per estimator class, and drawing from them.

A search space maps an estimator parameter name (as ``set_params`` takes it)
to an Optuna distribution, a list of choices or a callable ``f(trial) ->
value``; a whole space may also be a callable ``f(trial) -> dict``. See
:mod:`c3tl_sklearn.tuning` for the rules and the built-in spaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import BaseTrial
from sklearn.base import BaseEstimator

__all__ = ["default_search_space", "register_search_space", "suggest_params"]

SearchSpace = Mapping[str, Any] | Callable[[BaseTrial], dict]


def _hidden_dims(trial) -> tuple[int, ...]:
    """``hidden_dims`` of C3TL: one width, repeated for one or two layers."""
    width = trial.suggest_int("hidden_width", 64, 512, log=True)
    depth = trial.suggest_int("n_hidden_layers", 1, 2)
    return (width,) * depth


def _c3tl_space() -> dict:
    return {
        "lr": FloatDistribution(3e-4, 1e-2, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        "dropout": FloatDistribution(0.0, 0.4),
        "latent_dim": CategoricalDistribution((16, 32, 64, 128)),
        "hidden_dims": _hidden_dims,
        "leave_target_out": CategoricalDistribution((True, False)),
    }


# Built-in defaults, keyed by "module.QualName" so that torch is not imported here.
_DEFAULT_SPACES: dict[str, Callable[[], SearchSpace]] = {
    "c3tl_sklearn.estimator.C3TLRegressor": _c3tl_space,
    "c3tl_sklearn.baselines.MeanBaseline": dict,
    "c3tl_sklearn.baselines.AdditiveBaseline": lambda: {
        "shrinkage": FloatDistribution(0.0, 5.0),
    },
    "c3tl_sklearn.baselines.LinearTransferBaseline": lambda: {
        "n_components": IntDistribution(5, 100, log=True),
        "alpha": FloatDistribution(1e-2, 1e3, log=True),
    },
    "c3tl_sklearn.baselines.ClosestContextBaseline": lambda: {
        "metric": CategoricalDistribution(("pearson", "euclidean", "cosine")),
        "min_shared": IntDistribution(1, 20, log=True),
    },
}
_USER_SPACES: dict[str, SearchSpace] = {}


def _class_key(cls) -> str:
    if isinstance(cls, str):
        return cls
    if not isinstance(cls, type):
        raise TypeError(f"Expected an estimator class; got {cls!r}.")
    return f"{cls.__module__}.{cls.__qualname__}"


def _copy_space(space: SearchSpace) -> SearchSpace:
    return dict(space) if isinstance(space, Mapping) else space


def register_search_space(estimator_class: type | str, space: SearchSpace | None) -> None:
    """Set the default search space of an estimator class.

    Parameters
    ----------
    estimator_class : type or str
        The class (subclasses inherit its space unless they have their own),
        or its ``"module.QualName"``.
    space : dict or callable or None
        The search space (see the module documentation); ``None`` removes a
        registration and restores the built-in default, if any.

    Examples
    --------
    >>> from optuna.distributions import FloatDistribution
    >>> from c3tl_sklearn.baselines import AdditiveBaseline
    >>> from c3tl_sklearn.tuning import default_search_space, register_search_space
    >>> register_search_space(AdditiveBaseline, {"shrinkage": FloatDistribution(0, 2)})
    >>> default_search_space(AdditiveBaseline())["shrinkage"].high
    2.0
    >>> register_search_space(AdditiveBaseline, None)  # back to the built-in space
    >>> default_search_space(AdditiveBaseline())["shrinkage"].high
    5.0
    """
    key = _class_key(estimator_class)
    if space is None:
        _USER_SPACES.pop(key, None)
        return
    _check_space(space)
    _USER_SPACES[key] = _copy_space(space)


def _own_space(cls) -> SearchSpace | None:
    """The space of exactly this class (not of its bases), or None."""
    key = _class_key(cls)
    if key in _USER_SPACES:
        return _copy_space(_USER_SPACES[key])
    hook = cls.__dict__.get("search_space")
    if hook is not None:
        return _copy_space(getattr(cls, "search_space")())  # noqa: B009 - bound (class)method
    if key in _DEFAULT_SPACES:
        return _DEFAULT_SPACES[key]()
    return None


def _prefixed(space: SearchSpace, prefix: str) -> SearchSpace:
    if not prefix:
        return space
    if isinstance(space, Mapping):
        return {prefix + name: spec for name, spec in space.items()}

    def prefixed_space(trial):
        return {prefix + name: value for name, value in space(trial).items()}

    return prefixed_space


def default_search_space(estimator) -> SearchSpace:
    """The default search space of an estimator (a fresh copy you may edit).

    Parameters
    ----------
    estimator : estimator instance or class
        A package estimator, a subclass, an estimator whose class was
        registered with :func:`register_search_space` or defines a
        ``search_space()`` classmethod, or a :class:`~sklearn.pipeline.Pipeline`
        / :class:`~sklearn.compose.TransformedTargetRegressor` around one
        (parameter names then carry the ``step__`` / ``regressor__`` prefix).

    Returns
    -------
    space : dict or callable
        Parameter name to Optuna distribution, list of choices or
        ``callable(trial)``; or one callable ``trial -> dict``.

    Raises
    ------
    ValueError
        If no space is known for the estimator's class.

    Examples
    --------
    >>> from c3tl_sklearn.baselines import LinearTransferBaseline, MeanBaseline
    >>> from c3tl_sklearn.tuning import default_search_space
    >>> sorted(default_search_space(LinearTransferBaseline()))
    ['alpha', 'n_components']
    >>> default_search_space(MeanBaseline())
    {}
    """
    space = _lookup_space(estimator, "")
    if space is None:
        name = estimator.__name__ if isinstance(estimator, type) else type(estimator).__name__
        raise ValueError(
            f"No search space is known for {name}. Pass param_space=... (a dict of Optuna "
            "distributions), or register one with "
            f"c3tl_sklearn.tuning.register_search_space({name}, space)."
        )
    return space


def _lookup_space(estimator, prefix: str) -> SearchSpace | None:
    cls = estimator if isinstance(estimator, type) else type(estimator)
    for klass in cls.__mro__:
        if klass in (object, BaseEstimator):
            break
        space = _own_space(klass)
        if space is not None:
            return _prefixed(space, prefix)
    if isinstance(estimator, type):
        return None
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:  # Pipeline
        name, last = steps[-1]
        return _lookup_space(last, f"{prefix}{name}__")
    for attr in ("regressor", "estimator"):  # TransformedTargetRegressor, wrappers
        inner = getattr(estimator, attr, None)
        if inner is not None and hasattr(inner, "get_params"):
            return _lookup_space(inner, f"{prefix}{attr}__")
    return None


def _check_space(space) -> None:
    if callable(space) and not isinstance(space, Mapping):
        return
    if not isinstance(space, Mapping):
        raise TypeError(
            "A search space must be a dict {parameter: distribution} or a callable "
            f"trial -> dict; got {type(space).__name__}."
        )
    for name, spec in space.items():
        if not isinstance(name, str):
            raise TypeError(f"Search-space keys must be parameter names; got {name!r}.")
        if isinstance(spec, BaseDistribution) or callable(spec):
            continue
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"The list of choices for {name!r} is empty.")
            continue
        raise TypeError(
            f"Search-space entry {name!r} must be an Optuna distribution, a list of choices "
            f"or a callable(trial) -> value; got {spec!r}. (Fixed values belong on the "
            "estimator itself.)"
        )


def _suggest(trial, name: str, dist: BaseDistribution):
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"Unsupported Optuna distribution for {name!r}: {dist!r}.")


def suggest_params(trial, space: SearchSpace) -> dict:
    """Draw one set of estimator parameters from a search space.

    Parameters
    ----------
    trial : optuna.trial.BaseTrial
        The trial that suggests values (also an :class:`optuna.trial.FixedTrial`
        to rebuild the parameters of a finished trial).
    space : dict or callable
        See the module documentation.

    Returns
    -------
    params : dict
        Estimator parameters for ``set_params``.

    Examples
    --------
    >>> import optuna
    >>> from c3tl_sklearn.tuning import suggest_params
    >>> from c3tl_sklearn.tuning._spaces import _c3tl_space
    >>> fixed = optuna.trial.FixedTrial({"lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.1,
    ...     "latent_dim": 32, "hidden_width": 128, "n_hidden_layers": 2,
    ...     "leave_target_out": True})
    >>> suggest_params(fixed, _c3tl_space())["hidden_dims"]
    (128, 128)
    """
    _check_space(space)
    if not isinstance(space, Mapping):
        params = space(trial)
        if not isinstance(params, Mapping):
            raise TypeError(
                f"A callable search space must return a dict of parameters; got {params!r}."
            )
        return dict(params)
    params = {}
    for name, spec in space.items():
        if isinstance(spec, BaseDistribution):
            params[name] = _suggest(trial, name, spec)
        elif isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        else:
            params[name] = spec(trial)
    return params
