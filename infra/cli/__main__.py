"""`python -m infra.cli`: the `twinpipe` command."""

import sys

from infra.cli import main

sys.exit(main())
