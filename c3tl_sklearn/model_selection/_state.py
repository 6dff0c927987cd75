"""State's TOML split files: read one as a splitter, write one from any splitter of the package.

State (ArcInstitute) describes a split in a TOML file with four sections::

    [datasets]
    replogle = "/data/replogle/"

    [training]
    replogle = "train"

    [zeroshot]
    "replogle.jurkat" = "test"

    [fewshot]

    [fewshot."replogle.rpe1"]
    val = ["AARS"]
    test = ["AARS", "NUP107", "RPUSD4"]

Every context (State's "cell type") of a dataset takes the split of
``[training]``; a ``[zeroshot]`` entry sends a whole context to ``"val"`` or
``"test"``; a ``[fewshot]`` entry sends the listed perturbations of one
context to validation or test (the lists may overlap) and leaves its other
perturbations in training. Keys are ``"dataset.context"``, split at the first
dot.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np

from .._warnings import user_stacklevel
from ._base import _IndexTableSplitter, _observed, _read_table, _sorted, _ValidationSplitMixin

__all__ = ["StateSplit"]

_SECTIONS = ("datasets", "training", "zeroshot", "fewshot")
_SPLITS = ("train", "val", "test")
_FEWSHOT_KEYS = ("train", "val", "test")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _load_toml(source) -> dict:
    """The parsed TOML of a path, or a deep copy of a mapping (never the caller's object)."""
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as exc:
            raise ImportError(
                "Reading a TOML file on Python 3.10 needs tomli: pip install tomli (Python "
                "3.11+ reads it with the standard library), or pass the parsed dict."
            ) from exc
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"The split file {str(path)!r} does not exist (or is a folder); pass the path of "
            "a State TOML file."
        )
    with open(path, "rb") as fh:
        try:
            return tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{str(path)!r} is not valid TOML: {exc}.") from None


def _split_key(key: str, section: str) -> tuple[str, str]:
    dataset, dot, context = str(key).partition(".")
    if not dot or not dataset or not context:
        raise ValueError(
            f"[{section}] key {key!r} is not 'dataset.context'; State names a context as "
            "the dataset, a dot and the cell type, e.g. \"replogle.jurkat\"."
        )
    return dataset, context


def _check_spec(spec: dict) -> dict:
    """Refuse what State's layout does not have, with the fix; return the spec."""
    unknown = [k for k in spec if k not in _SECTIONS]
    if unknown:
        raise ValueError(
            f"The split file has section(s) {unknown} that State's layout does not have; "
            f"its sections are {list(_SECTIONS)}."
        )
    for section in _SECTIONS:
        if not isinstance(spec.get(section, {}), dict):
            raise ValueError(f"[{section}] must be a table, got {spec[section]!r}.")
    for dataset, value in spec.get("training", {}).items():
        if value not in _SPLITS:
            raise ValueError(
                f"[training] {dataset} = {value!r}: the value must be one of {list(_SPLITS)}."
            )
    for key, value in spec.get("zeroshot", {}).items():
        _split_key(key, "zeroshot")
        if value not in ("val", "test"):
            raise ValueError(
                f"[zeroshot] {key!r} = {value!r}: a zero-shot context goes to \"val\" or "
                "\"test\"."
            )
    for key, entry in spec.get("fewshot", {}).items():
        _split_key(key, "fewshot")
        if not isinstance(entry, dict):
            raise ValueError(
                f"[fewshot] {key!r} must be a table [fewshot.\"{key}\"] with val = [...] and "
                "test = [...] lists."
            )
        bad = [k for k in entry if k not in _FEWSHOT_KEYS]
        if bad:
            raise ValueError(
                f"[fewshot.\"{key}\"] has key(s) {bad}; State's few-shot entries have "
                f"{list(_FEWSHOT_KEYS)}."
            )
        for name, values in entry.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(
                    f"[fewshot.\"{key}\"] {name} must be a list of perturbation names "
                    f"(strings); got {values!r}."
                )
    return spec


def _datasets_of(spec: dict) -> list[str]:
    names = list(spec.get("datasets", {})) + list(spec.get("training", {}))
    for section in ("zeroshot", "fewshot"):
        names += [_split_key(k, section)[0] for k in spec.get(section, {})]
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------- writing TOML


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_value(value) -> str:
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) in a State split file")


def _format_toml(spec: dict) -> str:
    """State's layout, section by section, keys and lists in the spec's order."""
    lines: list[str] = []
    for section in ("datasets", "training", "zeroshot"):
        lines.append(f"[{section}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in spec.get(section, {}).items()]
        lines.append("")
    lines += ["[fewshot]", ""]
    for key, entry in spec.get("fewshot", {}).items():
        lines.append(f"[fewshot.{_toml_string(key)}]")
        lines += [f"{name} = {_toml_value(values)}" for name, values in entry.items()]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the splitter


def _rows_in_file(spec: dict, dataset: str, table, p_names: np.ndarray):
    """The rows the file puts in validation and in test, and the listed pairs X lacks.

    ``table`` is the coded index table of X and ``p_names`` X's perturbations
    as text. Returns boolean masks ``(in_val, in_test)`` over the rows and
    ``missing``, one ``"key: perturbation"`` per few-shot entry without a row.
    """
    contexts = table.context_labels
    # a TOML file names a context by its string form; the input contract has refused
    # labels that print alike, so each form names one context
    by_name = {str(label): code for code, label in enumerate(contexts)}

    def rows_of(key: str, section: str) -> np.ndarray:
        name = _split_key(key, section)[1]
        if name not in by_name:
            shown = [str(c) for c in contexts[:20]]
            raise ValueError(
                f"[{section}] {key!r}: {name!r} is not a context of X; its contexts are "
                f"{shown}{' ...' if len(contexts) > 20 else ''}. Check the context column "
                "(context_col, --context-col) and the dataset prefix."
            )
        return table.c_codes == by_name[name]

    default = spec["training"].get(dataset, "train")
    in_val = np.full(table.n_rows, default == "val")
    in_test = np.full(table.n_rows, default == "test")
    for key, value in spec["zeroshot"].items():
        if _split_key(key, "zeroshot")[0] == dataset:
            here = rows_of(key, "zeroshot")
            in_val[here], in_test[here] = value == "val", value == "test"
    missing: list[str] = []
    for key, entry in spec["fewshot"].items():
        if _split_key(key, "fewshot")[0] != dataset:
            continue
        here = rows_of(key, "fewshot")
        for name, target in (("val", in_val), ("test", in_test)):
            listed = entry.get(name, [])
            hit = here & np.isin(p_names, listed)
            target[hit] = True
            found = set(p_names[hit])
            missing += [f"{key}: {p}" for p in listed if p not in found]
    return in_val, in_test, missing


class StateSplit(_ValidationSplitMixin, _IndexTableSplitter):
    """The split of a State TOML file (zero-shot and few-shot sections) over an index table.

    One split: every context of the chosen dataset takes its ``[training]``
    split; a ``[zeroshot]`` entry ``"dataset.context" = "test"`` (or
    ``"val"``) sends all of that context's rows to test (validation); a
    ``[fewshot."dataset.context"]`` entry's ``test`` and ``val`` lists send
    those perturbations of that context to test and validation, its other
    rows stay in training. As everywhere in the package, a test or
    validation row whose perturbation has no training row is dropped (a
    model cannot transfer it); :meth:`split_info` counts them.

    Contexts and perturbations are matched by their string form, since a
    TOML file holds strings (a context ``3`` is ``"3"``).

    Parameters
    ----------
    toml : path or dict
        A State TOML file, or the dict ``tomllib.load`` gives for one. It is
        read in ``split`` and never modified.
    dataset : str, default=None
        The dataset (the part of ``"dataset.context"`` before the first dot)
        whose entries apply to ``X``; ``None`` takes the only dataset the file
        names, and is an error when it names several.
    context_col : hashable, default="context"
        Context column of ``X`` (unused when ``groups`` is passed to ``split``).
    perturbation_col : hashable, default="perturbation"
        Perturbation column of ``X``.

    Notes
    -----
    State allows a perturbation in both ``val`` and ``test``. Such a row is a
    test row, and never a training row: :meth:`split` yields training rows
    plus the validation rows that are not test rows;
    :meth:`split_validation` yields it as validation *and* test (the only
    splitter of the package whose validation and test sets may overlap).

    :meth:`from_splitter` writes the split of any splitter of the package
    in this layout, and :meth:`to_toml` writes the file.

    See Also
    --------
    LeaveOneContextOut : hold out whole contexts but an adaptation part.

    Examples
    --------
    >>> import pandas as pd
    >>> from c3tl_sklearn.model_selection import StateSplit
    >>> X = pd.DataFrame({"context": ["K562"] * 3 + ["RPE1"] * 3 + ["Jurkat"] * 3,
    ...                   "perturbation": ["AARS", "NUP107", "RPUSD4"] * 3})
    >>> spec = {"datasets": {"replogle": "/data/replogle"},
    ...         "training": {"replogle": "train"},
    ...         "zeroshot": {"replogle.Jurkat": "test"},
    ...         "fewshot": {"replogle.RPE1": {"val": ["AARS"], "test": ["NUP107"]}}}
    >>> cv = StateSplit(spec)
    >>> train, test = next(cv.split(X))
    >>> X.iloc[test].values.tolist()
    [['RPE1', 'NUP107'], ['Jurkat', 'AARS'], ['Jurkat', 'NUP107'], ['Jurkat', 'RPUSD4']]
    >>> print(cv.to_toml())
    [datasets]
    replogle = "/data/replogle"
    <BLANKLINE>
    [training]
    replogle = "train"
    <BLANKLINE>
    [zeroshot]
    "replogle.Jurkat" = "test"
    <BLANKLINE>
    [fewshot]
    <BLANKLINE>
    [fewshot."replogle.RPE1"]
    val = ["AARS"]
    test = ["NUP107"]
    <BLANKLINE>
    """

    _parameter_constraints: ClassVar[dict] = {
        "toml": [str, os.PathLike, dict],
        "dataset": [str, None],
        "context_col": [Hashable],
        "perturbation_col": [Hashable],
    }

    def __init__(
        self,
        toml: str | os.PathLike | dict,
        dataset: str | None = None,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
    ):
        self.toml = toml
        self.dataset = dataset
        self.context_col = context_col
        self.perturbation_col = perturbation_col

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of splits: a State file describes one.

        Parameters
        ----------
        X, y, groups : object
            Ignored; present for API compatibility.

        Returns
        -------
        n_splits : int
            1.
        """
        self._validate_params()
        return 1

    def read(self) -> dict:
        """The checked contents of the file: a dict of the four sections.

        Returns
        -------
        spec : dict
            ``{"datasets": ..., "training": ..., "zeroshot": ..., "fewshot": ...}``
            as written in the file (a fresh copy; missing sections are empty).
        """
        self._validate_params()
        spec = _check_spec(_load_toml(self.toml))
        return {section: spec.get(section, {}) for section in _SECTIONS}

    def _chosen_dataset(self, spec: dict) -> str:
        names = _datasets_of(spec)
        if self.dataset is not None:
            if self.dataset not in names:
                raise ValueError(
                    f"dataset={self.dataset!r} is not named in the split file; it names "
                    f"{names}."
                )
            return self.dataset
        if len(names) != 1:
            raise ValueError(
                f"The split file names {len(names)} datasets {names}; pass dataset=... "
                "(--dataset on the command line) to say which one X holds."
            )
        return names[0]

    def to_toml(self, path: str | os.PathLike | None = None) -> str:
        """Write the split in State's layout; the text of a canonical file comes back unchanged.

        Parameters
        ----------
        path : path, default=None
            Where to write the file; ``None`` only returns the text.

        Returns
        -------
        text : str
            The TOML text: ``[datasets]``, ``[training]``, ``[zeroshot]``,
            ``[fewshot]`` and one ``[fewshot."dataset.context"]`` table per
            few-shot context, keys and lists in the file's order.
        """
        text = _format_toml(self.read())
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_splitter(
        cls,
        cv,
        X,
        y=None,
        groups=None,
        *,
        split: int = 0,
        dataset: str = "c3tl",
        dataset_path: str = "",
    ) -> StateSplit:
        """The ``split``-th split of one of the package's splitters, as a State split.

        A context none of whose rows trains becomes a ``[zeroshot]`` entry;
        one with test (or validation) rows and training rows a
        ``[fewshot]`` entry listing the test (validation) perturbations.
        Validation rows come from ``split_validation`` where the splitter
        has it.

        Parameters
        ----------
        cv : splitter
            Any splitter with ``context_col`` and ``perturbation_col``
            (:class:`LeaveOneContextOut`, :class:`ContextKFold`, ...).
        X : pandas.DataFrame
            The index table ``cv`` splits.
        y : object, default=None
            Ignored.
        groups : array-like, default=None
            Passed to ``cv``.
        split : int, default=0
            Which of ``cv``'s splits to write.
        dataset : str, default="c3tl"
            The dataset name of the file's keys.
        dataset_path : str, default=""
            The ``[datasets]`` entry (where State finds the data).

        Returns
        -------
        state_split : StateSplit
            Over its parsed dict; its ``split(X)`` yields the same test rows
            as ``cv``'s split. Rows ``cv`` leaves out of both sides become
            training rows (State's layout has no "unused" rows), with a
            warning that counts them.

        Examples
        --------
        >>> import pandas as pd
        >>> from c3tl_sklearn.model_selection import LeaveOneContextOut, StateSplit
        >>> X = pd.DataFrame({"context": ["a"] * 4 + ["b"] * 4,
        ...                   "perturbation": ["p", "q", "r", "s"] * 2})
        >>> cv = LeaveOneContextOut(adaptation_fraction=0.25, random_state=0)
        >>> state = StateSplit.from_splitter(cv, X)
        >>> state.read()["fewshot"]
        {'c3tl.a': {'test': ['p', 'q', 's']}}
        >>> [t.tolist() for t in next(state.split(X))] == [t.tolist() for t in next(cv.split(X))]
        True
        """
        if not isinstance(split, int) or split < 0:
            raise ValueError(f"split={split!r} must be an integer >= 0.")
        if not isinstance(dataset, str) or not dataset or "." in dataset:
            raise ValueError(
                f"dataset={dataset!r} must be a non-empty name without a dot (State splits "
                "'dataset.context' at the first dot)."
            )
        ccol, pcol = cv.context_col, cv.perturbation_col
        parts = getattr(cv, "split_validation", None)
        chosen = None
        for i, sets in enumerate(parts(X, y, groups) if parts else cv.split(X, y, groups)):
            if i == split:
                chosen = sets
                break
        if chosen is None:
            raise ValueError(f"split={split} but {type(cv).__name__} yields fewer splits.")
        train, val, test = chosen if len(chosen) == 3 else (chosen[0], np.empty(0, int),
                                                            chosen[1])
        contexts = (np.asarray(groups, dtype=object) if groups is not None
                    else X[ccol].to_numpy(dtype=object))
        perturbations = X[pcol].to_numpy(dtype=object)
        role = np.full(len(X), "", dtype=object)
        role[train], role[val], role[test] = "train", "val", "test"
        zeroshot: dict[str, str] = {}
        fewshot: dict[str, dict[str, list[str]]] = {}
        n_unused = 0
        for context in dict.fromkeys(contexts):
            here = contexts == context
            key = f"{dataset}.{context}"
            roles = role[here]
            if not (roles == "train").any() and ((roles == "test") | (roles == "val")).any():
                # the whole context leaves training: State's zero-shot entry
                if (roles == "test").any() and (roles == "val").any():
                    raise ValueError(
                        f"Context {context!r} has validation and test rows but no training "
                        "row; State's zero-shot entry sends a context to one of them."
                    )
                zeroshot[key] = "test" if (roles == "test").any() else "val"
                continue  # its unused rows stay out: the zero-shot entry drops them again
            n_unused += int((roles == "").sum())
            entry = {name: [str(p) for p in perturbations[here & (role == name)]]
                     for name in ("val", "test")}
            entry = {name: values for name, values in entry.items() if values}
            if entry:
                fewshot[key] = entry
        if n_unused:
            warnings.warn(
                f"{n_unused} row(s) are neither training nor test rows of "
                f"{type(cv).__name__}'s split {split}; State's layout has no unused rows, so "
                "the written split trains on them.", UserWarning,
                stacklevel=user_stacklevel(),
            )
        spec = {
            "datasets": {dataset: str(dataset_path)},
            "training": {dataset: "train"},
            "zeroshot": zeroshot,
            "fewshot": fewshot,
        }
        return cls(spec, dataset=dataset, context_col=ccol, perturbation_col=pcol)

    def _iter_records(self, X, groups):
        spec = self.read()
        dataset = self._chosen_dataset(spec)
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        contexts = table.context_labels
        # the table's rows are X's rows; the file names perturbations as strings
        p_names = np.array([str(p) for p in X[self.perturbation_col]], dtype=object)
        in_val, in_test, missing = _rows_in_file(spec, dataset, table, p_names)
        if missing:
            warnings.warn(
                f"{len(missing)} perturbation(s) listed in the split file have no row in X "
                f"and are ignored (e.g. {missing[:3]}); pseudo-bulking may have dropped "
                "them for too few cells.", UserWarning,
                stacklevel=user_stacklevel(),
            )
        train = np.flatnonzero(~in_val & ~in_test)
        observed = _observed(table, train)
        predictable = observed[table.p_codes]
        test = np.flatnonzero(in_test & predictable)
        # a row in both lists is a test row: never trained on, also a validation row
        validation = np.flatnonzero(in_val & predictable)
        n_dropped = int(((in_val | in_test) & ~predictable).sum())
        held = np.unique(table.c_codes[test])
        yield {
            "train": _sorted([train]),
            "validation": validation.astype(np.intp),
            "validation_only": np.setdiff1d(validation, test).astype(np.intp),
            "test": test.astype(np.intp),
            "info": {
                "dataset": dataset,
                "test_contexts": tuple(contexts[held]),
                "n_dropped": n_dropped,
            },
        }

    def split(self, X, y=None, groups=None):
        """Generate the training and test indices of the file's split.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_columns)
            Index table with the context and perturbation columns.
        y : object, default=None
            Ignored; present for API compatibility.
        groups : array-like of shape (n_rows,), default=None
            Context label of every row, replacing the context column of ``X``.

        Yields
        ------
        train : ndarray of int
            Training rows and the validation rows that are not test rows, sorted.
        test : ndarray of int
            Test rows, sorted.
        """
        for record in self._iter_records(X, groups):
            yield _sorted([record["train"], record["validation_only"]]), record["test"]

