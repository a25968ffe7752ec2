"""`python -m hamtune` is the `hamtune` command."""

import sys

from hamtune.cli import main

sys.exit(main())
