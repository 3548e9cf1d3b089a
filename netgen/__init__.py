"""netgen: every FCN model from one short declaration, built with Caffe's NetSpec (see docs/ARCHITECTURE.md).

The declarations (caffe_fcn.registry) import no Caffe; the builders load it on first use."""
from caffe_fcn.registry import MODELS, REPO, Model, Task, get

__all__ = ['MODELS', 'REPO', 'Model', 'Task', 'generate', 'get', 'net', 'solver', 'write']


def __getattr__(name):
    if name in ('generate', 'net', 'solver', 'write'):
        from . import models
        return getattr(models, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
