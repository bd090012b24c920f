"""``python -m rt3d_passes.cli``: the ``rt3d`` command."""

import sys

from .main import main

sys.exit(main())
