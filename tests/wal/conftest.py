"""Fixtures of the WAL tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The helpers module sits beside the tests; tests/ has no packages, so make it importable.
sys.path.insert(0, str(Path(__file__).parent))
