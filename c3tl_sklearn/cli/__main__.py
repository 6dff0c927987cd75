"""``python -m c3tl_sklearn.cli``: the ``c3tl`` command.

The form of earlier versions, ``python -m c3tl_sklearn.cli --data ...`` (the
benchmark's options with no subcommand), still runs ``c3tl benchmark``.
"""

import sys

from ._c3tl import c3tl_main

_argv = sys.argv[1:]
if _argv and _argv[0].startswith("-") and _argv[0] not in ("-h", "--help", "--version"):
    _argv = ["benchmark", *_argv]
sys.exit(c3tl_main(_argv))
