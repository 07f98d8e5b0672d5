"""``python -m gf_integrations.cli``."""

import sys

from . import main

sys.exit(main())
