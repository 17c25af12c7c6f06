"""``python -m mig_spawner.demo.controlplane``: the node agent (see :mod:`.agent`)."""

import sys

from .agent import main

sys.exit(main())
