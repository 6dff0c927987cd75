"""Finding the peers' environments, measured subprocesses, isolated fits, benchmark options."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn.baselines import AdditiveBaseline
from c3tl_sklearn.cli import main, make_model
from c3tl_sklearn.datasets import make_synthetic_cells, make_synthetic_perturbations
from c3tl_sklearn.peers import (
    IsolatedRegressor,
    PeerCells,
    PeerEnvironmentError,
    PeerRunError,
    StatePeer,
    find_peer_python,
    peer_home,
    run_measured,
)


@pytest.fixture
def no_peer_env(monkeypatch, tmp_path):
    monkeypatch.setenv("C3TL_PEERS_DIR", str(tmp_path / "peers"))
    for name in ("STATE", "CELLFLOW"):
        monkeypatch.delenv(f"C3TL_{name}_PYTHON", raising=False)
    return tmp_path / "peers"


def test_missing_environment_names_the_install_command(no_peer_env):
    with pytest.raises(PeerEnvironmentError, match=r"c3tl peers install state") as info:
        find_peer_python("state")
    assert str(no_peer_env / "state") in str(info.value)
    assert "C3TL_STATE_PYTHON" in str(info.value) and "CC BY-NC-SA" in str(info.value)
    with pytest.raises(PeerEnvironmentError, match="c3tl peers install cellflow"):
        find_peer_python("cellflow", no_peer_env / "elsewhere")
    with pytest.raises(ValueError, match="Unknown peer 'cpa'"):
        find_peer_python("cpa")


def test_environment_found_by_folder_variable_or_default(no_peer_env, monkeypatch, tmp_path):
    env = tmp_path / "venv"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)
    assert find_peer_python("state", env) == env / "bin" / "python"
    assert find_peer_python("state", env / "bin" / "python") == env / "bin" / "python"
    monkeypatch.setenv("C3TL_CELLFLOW_PYTHON", str(env))
    assert find_peer_python("cellflow") == env / "bin" / "python"
    monkeypatch.delenv("C3TL_CELLFLOW_PYTHON")
    default = peer_home("cellflow")
    assert default == no_peer_env / "cellflow"
    (default / "bin").mkdir(parents=True)
    (default / "bin" / "python").symlink_to(sys.executable)
    assert find_peer_python("cellflow") == default / "bin" / "python"


def test_an_environment_without_the_peer_is_refused(tmp_path):
    from c3tl_sklearn.peers._env import check_peer_python

    with pytest.raises(PeerEnvironmentError, match=r"does not have State.*c3tl peers install"):
        check_peer_python("state", Path(sys.executable))


def test_run_measured_reports_the_childs_peak_memory_and_failures(tmp_path):
    grow = "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())"
    small = run_measured([sys.executable, "-c", "print(1)"], log=tmp_path / "a.log")
    big = run_measured([sys.executable, "-c", grow], log=tmp_path / "b.log")
    assert 0 < small.peak_rss_mib < big.peak_rss_mib
    assert big.peak_rss_mib - small.peak_rss_mib > 250  # the 300 MiB array, not this process
    assert big.seconds > 0
    with pytest.raises(PeerRunError, match=r"(?s)exit status 3.*boom"):
        run_measured([sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
                     log=tmp_path / "c.log")
    with pytest.raises(PeerRunError, match="longer than 1 s"):
        run_measured([sys.executable, "-c", "import time; time.sleep(30)"],
                     log=tmp_path / "d.log", timeout=1)


def test_isolated_regressor_predicts_as_in_process_and_measures():
    X, Y = make_synthetic_perturbations(4, 12, 6, random_state=0)
    train, test = X.index[:40], X.index[40:]
    inside = AdditiveBaseline().fit(X.loc[train], Y.loc[train]).predict(X.loc[test])
    isolated = IsolatedRegressor(AdditiveBaseline()).fit(X.loc[train], Y.loc[train])
    np.testing.assert_allclose(isolated.predict(X.loc[test]), inside, rtol=1e-6)
    assert isolated.fit_peak_rss_mib_ > 20 and isolated.predict_peak_rss_mib_ > 20
    assert isolated.fit_seconds_ > 0 and isolated.predict_seconds_ > 0
    assert isinstance(isolated.estimator_, AdditiveBaseline)


def test_make_model_builds_a_peer_with_cells_and_options():
    cells = PeerCells("cells.h5ad", "line", "gene", "NTC")
    model = make_model("state", cells=cells, peer_options={"state": {"max_steps": 7}},
                       random_state=3)
    assert isinstance(model, StatePeer)
    assert model.max_steps == 7 and model.random_state == 3 and model.cells is cells
    with pytest.raises(ValueError, match=r"trains on single cells.*--h5ad"):
        make_model("cellflow")


@pytest.fixture(scope="module")
def cells_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "cells.h5ad"
    make_synthetic_cells(3, 6, 40, n_cells=10, random_state=0).write_h5ad(path)
    return path


def _bench_args(path, out, *extra):
    return ["--h5ad", str(path), "--context-key", "context", "--perturbation-key",
            "perturbation", "--control", "control", "--transform", "normalize_log1p",
            "--n-trials", "0", "--quiet", "--out", str(out), *extra]


def test_benchmark_refuses_peers_without_cells_or_environment(capsys, cells_file, tmp_path,
                                                              no_peer_env):
    assert main(["--data", "synthetic", "--models", "state,additive", "--n-trials", "0",
                 "--quiet", "--out", str(tmp_path / "a")]) == 2
    assert "the peers train on single cells" in capsys.readouterr().err
    assert main(_bench_args(cells_file, tmp_path / "b", "--models", "additive,cellflow")) == 2
    err = capsys.readouterr().err
    assert "c3tl peers install cellflow" in err
    assert not (tmp_path / "b").exists()  # refused before anything ran


def test_benchmark_peer_option_and_all(capsys):
    from c3tl_sklearn.cli import build_parser

    args = build_parser().parse_args(["--models", "all", "--peer-option",
                                      "state.max_steps=12", "--peer-option",
                                      "cellflow.lr=0.01"])
    assert "state" not in args.models and "c3tl" in args.models
    assert args.peer_option == [("state", "max_steps", 12), ("cellflow", "lr", 0.01)]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--peer-option", "cpa.steps=3"])
    assert "PEER.PARAM=VALUE" in capsys.readouterr().err


def test_isolated_benchmark_reports_peak_memory_for_every_model(cells_file, tmp_path):
    out = tmp_path / "run"
    assert main(_bench_args(cells_file, out, "--models", "mean,additive", "--isolate")) == 0
    fits = pd.read_csv(out / "fits.csv")
    assert (fits["fit_peak_rss_mib"] > 20).all() and (fits["predict_peak_rss_mib"] > 20).all()
    table = (out / "table.md").read_text()
    assert "Peak MiB" in table.splitlines()[0] and "Predict s / fold" in table


def test_benchmark_without_isolate_keeps_the_usual_table(cells_file, tmp_path):
    out = tmp_path / "plain"
    assert main(_bench_args(cells_file, out, "--models", "mean")) == 0
    assert "Peak MiB" not in (out / "table.md").read_text()
    assert pd.read_csv(out / "fits.csv")["fit_peak_rss_mib"].isna().all()


# -------------------------------------------------------- real runs of the peers
def _peer_python_or_skip(name):
    try:
        return find_peer_python(name)
    except PeerEnvironmentError as exc:
        pytest.skip(f"{name} is not installed here (an optional, non-commercial peer; CI "
                    f"does not install it): {str(exc)[:120]}")


@pytest.mark.parametrize("name, options", [
    ("state", {"max_steps": 20, "hidden_dim": 32, "cell_set_len": 16}),
    ("cellflow", {"num_iterations": 50, "hidden_dim": 32, "n_components": 8}),
])
def test_real_peer_trains_and_predicts_effects(name, options, tmp_path):
    """One real training of the peer on a tiny set, wherever its environment exists."""
    python = _peer_python_or_skip(name)
    from c3tl_sklearn.preprocessing import PseudobulkOptions, pseudobulk

    adata = make_synthetic_cells(3, 4, 30, n_cells=12, n_control_cells=16, random_state=0)
    X, Y = pseudobulk(adata, "context", "perturbation", "control",
                      options=PseudobulkOptions(transform="normalize_log1p"))
    test = ((X["context"] == "ctx2") & (X["perturbation"] != "pert0")).to_numpy()
    cells = PeerCells(adata, "context", "perturbation", "control", transform="normalize_log1p")
    model = make_model(name, cells=cells, peer_options={name: {"python": python, **options}})
    model.fit(X[~test], Y[~test])
    pred = model.predict(X[test])
    assert pred.shape == (int(test.sum()), Y.shape[1]) and np.isfinite(pred).all()
    assert model.fit_peak_rss_mib_ > 100 and model.predict_peak_rss_mib_ > 100
    assert model.peer_version_
    workdir = model.workdir_
    assert workdir.exists()
    del model
    assert not workdir.exists()  # removed with the estimator (keep_files=False)


def test_c3tl_peers_list_and_install_errors(capsys, no_peer_env):
    from c3tl_sklearn.cli import c3tl_main

    assert c3tl_main(["peers", "list"]) == 0
    out = capsys.readouterr().out
    assert "state: not installed" in out and "c3tl peers install cellflow" in out
    assert c3tl_main(["peers", "install"]) == 2
    assert "name the peer(s) to install" in capsys.readouterr().err
    assert c3tl_main(["peers", "install", "cpa"]) == 2
    assert "unknown peer(s) ['cpa']" in capsys.readouterr().err
    assert c3tl_main(["peers", "install", "state", "cellflow", "--prefix", "x"]) == 2
    assert "one peer at a time" in capsys.readouterr().err


def test_install_peer_creates_a_venv_and_pins_the_packages(monkeypatch, tmp_path):
    from c3tl_sklearn.peers import _env, install_peer

    calls = []

    def fake_run(command, check):
        calls.append([str(c) for c in command])
        if "venv" in command:  # what `python -m venv` leaves behind
            (tmp_path / "env" / "bin").mkdir(parents=True)
            (tmp_path / "env" / "bin" / "python").symlink_to(sys.executable)

    monkeypatch.setattr(_env.subprocess, "run", fake_run)
    monkeypatch.setattr(_env, "check_peer_python", lambda name, exe: "0.11.1")
    exe = install_peer("state", tmp_path / "env", extra_pip_args=["--no-cache-dir"])
    assert exe == tmp_path / "env" / "bin" / "python"
    assert calls[0][1:] == ["-m", "venv", str(tmp_path / "env")]
    assert calls[1][-3:] == ["--no-cache-dir", "torch==2.13.0", "arc-state==0.11.1"]
    assert calls[1][:4] == [str(exe), "-m", "pip", "install"]
