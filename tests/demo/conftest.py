"""The demo's tests run README's CLI examples with the CLI tests' helpers (``cli_helpers``,
and ``test_live.hub_pod`` for a pod as the hub marks it): put tests/cli on the path, so
that this folder runs on its own too."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
