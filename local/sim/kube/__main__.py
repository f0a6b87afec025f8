"""Entry point: `python -m local.sim.kube --scenario FILE` (see local/sim/kube/serve.py)."""

import sys

from local.sim.kube.serve import main

sys.exit(main())
