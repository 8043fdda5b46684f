"""``python -m orsguard.options COMMAND ...``: the same as ``orsguard options COMMAND ...``."""

import sys

from orsguard.cli import main

sys.exit(main(["options", *sys.argv[1:]]))
