"""Entry point: `python -m local.sim --scenario FILE` (see local/sim/server.py)."""

import sys

from local.sim.server import main

sys.exit(main())
