"""``python -m c3tl_sklearn.cli``: the ``c3tl`` command."""

import sys

from ._c3tl import c3tl_main

sys.exit(c3tl_main(sys.argv[1:]))
