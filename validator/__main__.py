"""`python -m validator` == `aifactory-validate`."""

import sys

from validator.cli import main

sys.exit(main())
