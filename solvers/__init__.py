"""Training, scoring and inference for the FCN models (see docs/ARCHITECTURE.md)."""

__all__ = ['main']


def __getattr__(name):  # MODEL/solve.py calls solvers.main; importing the package loads nothing heavy
    if name == 'main':
        from solvers.driver import main
        return main
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
