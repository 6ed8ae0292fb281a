"""``python -m bench``: every benchmark in turn (for now the engine's)."""

import sys

from bench.engine import main

sys.exit(main())
