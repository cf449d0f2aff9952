"""`python -m codec ...` runs the `wavtok` command line."""

import sys

from codec.cli import main

sys.exit(main())
