"""``python -m edgequant`` runs the CLI."""

import sys

from edgequant.cli import main

sys.exit(main())
