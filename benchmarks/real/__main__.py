"""python -m benchmarks.real: the real-model benchmark (benchmarks/real/real.py)."""

import sys

from benchmarks.real.real import main

sys.exit(main())
