"""An app module that calls sys.exit() while it is imported (a failed init, reported as one)."""

import sys

sys.exit(3)
