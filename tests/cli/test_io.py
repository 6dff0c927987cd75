"""Tests of the benchmark's data loading and checks (``c3tl_sklearn.cli._io``)."""

import re

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn.cli import (
    BenchmarkDataError,
    H5adCells,
    check_benchmark_data,
    load_benchmark_data,
    main,
)
from c3tl_sklearn.datasets import make_synthetic_perturbations

# --------------------------------------------------------------------------- bad data


def write_bad(tmp_path, kind: str) -> list[str]:
    X, Y = make_synthetic_perturbations(4, 10, 6, random_state=0)
    table = X.join(Y)
    path = tmp_path / "data.csv"
    if kind == "missing column":
        table.drop(columns="perturbation").to_csv(path, index=False)
    elif kind == "nan":
        table.loc[7, "gene3"] = np.nan
        table.to_csv(path, index=False)
    elif kind == "one context":
        table[table["context"] == "ctx1"].to_csv(path, index=False)
    elif kind == "text gene":
        table.assign(note="x").to_csv(path, index=False)
    elif kind == "duplicate pair":
        pd.concat([table, table.iloc[[0]]]).to_csv(path, index=False)
    elif kind == "missing label":
        table.loc[3, "context"] = None
        table.to_csv(path, index=False)
    elif kind == "row mismatch":
        X.to_csv(tmp_path / "index.csv", index=False)
        Y.iloc[:-1].to_csv(tmp_path / "effects.csv", index=False)
        return ["--index", str(tmp_path / "index.csv"), "--effects",
                str(tmp_path / "effects.csv")]
    elif kind == "no file":
        return ["--data", str(tmp_path / "nowhere.csv")]
    elif kind == "bad suffix":
        path = tmp_path / "data.xlsx"
        path.write_text("x")
    elif kind == "unparsable":
        path = tmp_path / "data.parquet"
        path.write_text("not parquet")
    return ["--data", str(path)]


@pytest.mark.parametrize("kind, message", [
    ("missing column", r"missing column\(s\) \['perturbation'\]"),
    ("nan", r"effect matrix contains 1 NaN or infinite value\(s\) \(first at row 7, column 3\)"),
    ("one context", r"only one context \('ctx1'\)"),
    ("text gene", r"not numeric .* 'note'"),
    ("duplicate pair", r"1 duplicated \(context, perturbation\) pair\(s\)"),
    ("missing label", r"column 'context' has 1 missing label\(s\), the first in row 3"),
    ("row mismatch", r"effect matrix has 39 rows but the index table has 40"),
    ("no file", r"does not exist"),
    ("bad suffix", r"use \.csv, \.tsv or \.parquet"),
    ("unparsable", r"Cannot parse the data file"),
])
def test_bad_data_file_gives_a_clear_error(tmp_path, capsys, kind, message):
    argv = [*write_bad(tmp_path, kind), "--models", "mean", "--n-trials", "0", "--quiet",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("c3tl-benchmark: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_check_benchmark_data_directly():
    X, Y = make_synthetic_perturbations(3, 5, 4, random_state=0)
    X2, Y2 = check_benchmark_data(X.assign(extra=1), Y.to_numpy())
    assert list(X2.columns) == ["context", "perturbation"]
    assert list(Y2.columns) == ["gene0", "gene1", "gene2", "gene3"]
    assert Y2.dtypes.eq(np.float32).all()
    with pytest.raises(BenchmarkDataError, match="at least 2 genes"):
        check_benchmark_data(X, Y.iloc[:, :1])
    Y_inf = Y.copy()
    Y_inf.iloc[2, 1] = np.inf
    with pytest.raises(BenchmarkDataError, match="NaN or infinite"):
        check_benchmark_data(X, Y_inf)


def test_load_benchmark_data_sources():
    X, Y, text = load_benchmark_data("lincs")
    assert X.shape == (5125, 2) and Y.shape == (5125, 593) and "LINCS" in text
    with pytest.raises(BenchmarkDataError, match="--index and --effects must be given"):
        load_benchmark_data(index="x.csv")
    with pytest.raises(BenchmarkDataError, match="needs --context-key"):
        load_benchmark_data(h5ad=H5adCells("x.h5ad"))


