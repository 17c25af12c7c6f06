"""tests/z2jh: the real Z2JH chart (real helm) running its own hub config on the image's pins."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
