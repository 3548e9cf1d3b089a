#!/usr/bin/env python3
"""Train the model this folder is named after, as the reference does (see --help); the logic is solvers.driver."""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent))  # the repository root, from any working directory
import solvers  # noqa: E402

if __name__ == '__main__':
    sys.exit(solvers.main(here.name))
