"""``python -m orsguard.host``: the same options as ``orsguard serve``."""

import sys

from orsguard.host.command import main

sys.exit(main())
