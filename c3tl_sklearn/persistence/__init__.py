"""Model files without pickle: ``save`` / ``load`` of fitted estimators as one safetensors file.

A model file is a single `safetensors <https://huggingface.co/docs/safetensors>`_
file. Every numeric array of the fitted state (network weights and buffers,
PCA bases, read-out statistics, effect tables) is one of its tensors; the
rest (estimator class, ``get_params()``, labels, gene names, training
history, versions) is a JSON document stored in the file's header metadata,
with a SHA-256 checksum over the document and every tensor.

Why one safetensors file rather than a directory or skops: one file is what
people copy, attach and archive, and its JSON and weights cannot get out of
step; safetensors' header parser and JSON are the only parsers that touch
the file, so loading never executes code (no pickle anywhere, torch's
unpickler included), and any safetensors tool can list the tensors and print
the JSON (``safe_open(path, "numpy").metadata()``).

What loading checks, in order: the file is a safetensors file (a pickle or a
truncated file is named as such), it carries this package's metadata, its
format version is one this version reads, its checksum matches, and every
class it names is on a fixed list (the package's estimators, scikit-learn's
``PCA`` and ``Ridge``, :class:`~c3tl_sklearn.adaptation.ContextReadout`,
skorch's ``History``); nothing else is ever imported or constructed. Any
failure is a ``ValueError`` that says what is wrong.

Examples
--------
>>> import tempfile, pathlib
>>> from c3tl_sklearn import MeanBaseline
>>> from c3tl_sklearn.datasets import make_synthetic_perturbations
>>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
>>> model = MeanBaseline().fit(X, Y)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
>>> _ = model.save(path)
>>> restored = MeanBaseline.load(path)
>>> bool((restored.predict(X) == model.predict(X)).all())
True
"""

from ._decode import load, read_metadata
from ._encode import save
from ._format import FORMAT_VERSION
from ._jsonable import jsonable
from ._mixin import PersistenceMixin

__all__ = ["FORMAT_VERSION", "PersistenceMixin", "jsonable", "load", "read_metadata", "save"]
