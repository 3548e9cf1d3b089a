"""What every fcn command-line tool shares: how a missing pycaffe is reported.

Each tool parses its arguments (and answers --help) before it imports Caffe, so both work on a machine where
`make setup` has not built pycaffe yet; a command that needs Caffe then says so in one line and exits 1.
"""
import functools
import sys

PYCAFFE_MISSING = 'pycaffe is not installed in this environment: run make setup'


def pycaffe_missing(err):
    """Whether an import failed because the caffe package itself is absent."""
    return isinstance(err, ModuleNotFoundError) and (err.name or '').partition('.')[0] == 'caffe'


def tool(prog):
    """Decorate a tool's main: a missing pycaffe becomes `PROG: error: ...` and exit status 1.
    `prog` is the program's name, or a function of main's arguments that gives it."""
    def decorate(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except ModuleNotFoundError as err:
                if not pycaffe_missing(err):
                    raise
                name = prog(*args, **kwargs) if callable(prog) else prog
                print(f'{name}: error: {PYCAFFE_MISSING}', file=sys.stderr)
                return 1
        return run
    return decorate
