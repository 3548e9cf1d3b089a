"""netgen: every FCN model from one short declaration, built with Caffe's NetSpec (see docs/CONTRACTS.md)."""
from .models import MODELS, REPO, Model, Task, generate, get, net, solver, write

__all__ = ['MODELS', 'REPO', 'Model', 'Task', 'generate', 'get', 'net', 'solver', 'write']
