"""`python -m aifactory` = `aifactory-server` (handy where the console script is not on PATH)."""

import sys

from aifactory.cli import main

sys.exit(main())
