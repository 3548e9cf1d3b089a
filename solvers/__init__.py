"""Training, scoring and inference for the FCN models (see docs/CONTRACTS.md)."""
import os

# Caffe logs every layer it builds at INFO level; keep warnings and errors (set before caffe is imported).
os.environ.setdefault('GLOG_minloglevel', '2')

from solvers.driver import main  # noqa: E402

__all__ = ['main']
