"""What starting ``c3tl`` imports: no heavy library for ``--help``, no compiler for ``predict``.

Each case runs in a fresh interpreter and reads its ``sys.modules``: the
imports, not their time (``benchmarks/startup.py`` measures that), so the test
does not depend on the machine's load.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from c3tl_sklearn.datasets import make_synthetic_perturbations

from ..conftest import HANG_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]

#: Libraries a help text or ``import c3tl_sklearn`` must not pay for.
HEAVY = ("torch", "pandas", "sklearn", "scipy", "anndata", "skorch", "optuna", "matplotlib")
#: What predicting with a saved model never needs: the compiler, tuning, plots, scanpy.
NOT_FOR_PREDICT = ("torch._dynamo", "optuna", "matplotlib", "scanpy", "sklearn.decomposition",
                   "sklearn.linear_model")

_RUN = """
import json, sys
code = 0
try:
    {statement}
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def imported_after(statement: str, cwd=REPO) -> set[str]:
    """The modules loaded by ``statement`` in a fresh interpreter (stdout kept for the JSON)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    script = _RUN.format(statement=statement)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=HANG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] in (0, None), done.stderr
    return set(result["modules"])


def loaded(modules: set[str], names) -> list[str]:
    return [n for n in names if n in modules]


def c3tl(*args) -> str:
    """A statement running ``c3tl ARGS`` with its output out of the way of the JSON."""
    return ("import contextlib, io\n    from c3tl_sklearn.cli import c3tl_main\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            f"        code = c3tl_main({[str(a) for a in args]!r})")


@pytest.mark.parametrize("statement", [
    "import c3tl_sklearn",
    "import c3tl_sklearn.cli",
    c3tl("--help"),
    *(c3tl(command, "--help") for command in
      ("pseudobulk", "fit", "predict", "evaluate", "export", "peers", "benchmark")),
], ids=["import", "import-cli", "help", "pseudobulk", "fit", "predict", "evaluate", "export",
        "peers", "benchmark"])
def test_help_and_import_load_no_heavy_library(statement):
    assert loaded(imported_after(statement), HEAVY) == []


def test_peers_list_reads_the_environments_without_the_adapters_libraries(tmp_path):
    env_dir = f"os.environ['C3TL_PEERS_DIR'] = {str(tmp_path)!r}\n    "
    modules = imported_after("import os\n    " + env_dir + c3tl("peers", "list"))
    assert loaded(modules, HEAVY) == []


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A C3TL and a mean-baseline model file, fitted in this process, and pairs to predict."""
    from c3tl_sklearn import C3TLRegressor, MeanBaseline

    folder = tmp_path_factory.mktemp("startup")
    X, Y = make_synthetic_perturbations(3, 8, 6, random_state=0)
    X.to_csv(folder / "pairs.csv", index=False)
    C3TLRegressor(max_epochs=2, hidden_dims=(8,), latent_dim=4).fit(X, Y).save(
        folder / "c3tl.model")
    MeanBaseline().fit(X, Y).save(folder / "mean.model")
    return folder


@pytest.mark.parametrize("model", ["c3tl", "mean"])
@pytest.mark.parametrize("output", ["predictions.csv", "predictions.h5ad"])
def test_predict_loads_neither_the_compiler_nor_tuning_nor_plots(model_files, model, output):
    pytest.importorskip("anndata")
    modules = imported_after(c3tl("predict", f"{model}.model", "--pairs", "pairs.csv", "-o",
                                  output, "--quiet"), cwd=model_files)
    assert (model_files / output).is_file()
    assert loaded(modules, NOT_FOR_PREDICT) == []
    # a table in, a table out: no AnnData either
    if output.endswith(".csv"):
        assert loaded(modules, ("anndata",)) == []
