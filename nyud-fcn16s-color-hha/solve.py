#!/usr/bin/env python3
"""Train nyud-fcn16s-color-hha as the reference does (see --help); the logic lives in solvers.driver."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, from any working directory
import solvers  # noqa: E402

if __name__ == '__main__':
    sys.exit(solvers.main('nyud-fcn16s-color-hha'))
