"""`python -m pokerlib`: the command line lives in pokerlib.tools.cli."""

import sys

from .tools.cli import main

sys.exit(main())
