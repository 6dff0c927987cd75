"""``benchmarks/regimes.py``: its verdicts and the LINCS rows read from ``make scarcity``."""

import pandas as pd
import pytest

from ._scripts import load_script


@pytest.fixture(scope="module")
def regimes():
    return load_script("regimes")


def _rows(cell, scores):
    """One row per (model, target) with the given centred Pearson values."""
    return [{"group": "g", "cell": cell, "target": f"t{i}", "n_train_contexts": 5,
             "adaptation_fraction": 0.1, "model": model, "pearson_delta": value,
             "centered_pearson": value, "mse": 1.0 - value}
            for model, values in scores.items() for i, value in enumerate(values)]


def test_verdicts(regimes):
    scores = pd.DataFrame(
        _rows("wins", {"C3TL": [0.9, 0.8], "Additive": [0.5, 0.4]})
        + _rows("close", {"C3TL": [0.60, 0.50], "Linear transfer": [0.62, 0.52],
                          "Additive": [0.3, 0.3]})
        + _rows("loses", {"C3TL": [0.30, 0.31], "Linear transfer": [0.60, 0.61],
                          "Additive": [0.5, 0.5]})
    )
    text = regimes.table(scores)
    verdicts = {}
    for line in text.splitlines():
        if line.startswith("| g |"):
            fields = [f.strip() for f in line.strip("|").split("|")]
            verdicts[fields[1], fields[4]] = fields[-1]
    for metric in regimes.METRICS:
        assert verdicts["wins", metric] == "first"
        assert verdicts["close", metric] == "within 1 SE"
        assert verdicts["loses", metric] == "behind Linear transfer"
    assert "every metric: 2 of 3 cells" in text
    # a well-formed markdown table: header, separator and rows of one width
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in rows}) == 1


def test_lincs_rows_from_a_scarcity_run(regimes, tmp_path):
    long = pd.DataFrame({
        "model": ["c3tl", "c3tl", "linear", "linear"],
        "split": [0, 0, 0, 0], "test_context": ["A375"] * 4, "n_train_contexts": [5] * 4,
        "adaptation_fraction": [0.1] * 4,
        "metric": ["centered_pearson_delta", "mse"] * 2, "value": [0.6, 0.08, 0.5, 0.09],
    })
    path = tmp_path / "scores.csv"
    long.to_csv(path, index=False)
    rows = regimes.lincs_from_benchmark(path).set_index("model")
    assert rows.loc["C3TL", "centered_pearson"] == 0.6
    assert rows.loc["Linear transfer", "mse"] == 0.09
    assert set(rows["group"]) == {"lincs"}
    assert rows["pearson_delta"].isna().all()  # a run without it leaves it empty


def test_a_cell_run_again_replaces_its_rows_instead_of_counting_them_twice(regimes, tmp_path):
    path = tmp_path / "scores.csv"
    first = pd.DataFrame({"group": "g", "cell": ["a", "a", "b"], "model": ["C3TL", "mean", "C3TL"],
                          "value": [1.0, 2.0, 3.0]})
    regimes._replace_rows(path, first)
    again = pd.DataFrame({"group": "g", "cell": ["a"], "model": ["C3TL"], "value": [9.0]})
    regimes._replace_rows(path, again)
    got = pd.read_csv(path).sort_values(["cell", "model"]).reset_index(drop=True)
    # cell a's C3TL row replaced; its mean row (not rerun) and cell b kept
    assert got[["cell", "model", "value"]].values.tolist() == [
        ["a", "C3TL", 9.0], ["a", "mean", 2.0], ["b", "C3TL", 3.0]]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]  # no temporary left
    regimes._replace_rows(path, again.iloc[:0])  # a cell without rows changes nothing
    assert len(pd.read_csv(path)) == 3


def test_each_run_is_recorded_with_its_command_and_threads(regimes, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["regimes.py", "--groups", "shapes", "--cells", "Tahoe x"])
    regimes._record_run(tmp_path, 1)
    monkeypatch.setattr("sys.argv", ["regimes.py", "--table"])
    regimes._record_run(tmp_path, None)  # --table fits nothing
    lines = (tmp_path / "runs.md").read_text().splitlines()
    assert lines[0] == "# The runs behind scores.csv and table.md"
    runs = [line for line in lines if line.startswith("- ")]
    assert len(runs) == 2  # appended, the first kept
    assert ", 1 thread(s): `python benchmarks/regimes.py --groups shapes --cells 'Tahoe x'`" \
        in runs[0]
    assert runs[1].endswith(", table only: `python benchmarks/regimes.py --table`")
