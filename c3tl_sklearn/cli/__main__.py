"""``python -m c3tl_sklearn.cli``: the ``c3tl-benchmark`` command."""

import sys

from ._main import main

sys.exit(main())
