"""The command-line kit every fcn tool uses: the shared options, one error format, documented exit codes.

    PROG: error: MESSAGE     on standard error, for every failure
    0  success    1  runtime failure    2  bad usage or input    130  interrupted (Ctrl-C)

Each tool parses its arguments (and answers --help) before it imports Caffe, so both work on a machine where
`make setup` has not built pycaffe yet; a command that needs Caffe then says so and exits 1. Caffe's own log
level comes from the environment only: GLOG_minloglevel, read by glog when Caffe is first imported; a tool
(`tool`) makes its default 2 (warnings and errors) as it starts, before its main imports Caffe. Importing this
module changes nothing.
"""
import argparse
import contextlib
import functools
import os
import signal
import sys
import threading
from fractions import Fraction
from pathlib import Path, PurePath

from caffe_fcn import registry

OK, FAILURE, BAD_INPUT, INTERRUPTED = 0, 1, 2, 130
PYCAFFE_MISSING = 'pycaffe is not installed in this environment: run make setup'


class BadInput(Exception):
    """Bad usage or input, found before any harm: the message says what to do (exit status 2)."""


class Failure(Exception):
    """A run that started could not finish (exit status 1)."""


def pycaffe_missing(err):
    """Whether an import failed because the caffe package itself is absent."""
    return isinstance(err, ModuleNotFoundError) and (err.name or '').partition('.')[0] == 'caffe'


def error(prog, message, status):
    print(f'{prog}: error: {message}', file=sys.stderr)
    return status


def tool(name):
    """Decorate a tool's main so that every failure is one `NAME: error: ...` line and its exit status."""
    def decorate(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            os.environ.setdefault('GLOG_minloglevel', '2')  # before main imports Caffe: its log stays quiet
            return flushed(name, outcome(name, main, args, kwargs))
        return run
    return decorate


def outcome(name, main, args, kwargs):
    """main's exit status, every failure one `NAME: error: ...` line."""
    try:
        return main(*args, **kwargs)
    except ModuleNotFoundError as err:
        if not pycaffe_missing(err):
            return internal_error(name, err)
        return error(name, PYCAFFE_MISSING, FAILURE)
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to say
        return OK
    except (BadInput, ValueError) as err:
        return error(name, err, BAD_INPUT)
    except (Failure, OSError) as err:
        return error(name, err, FAILURE)
    except KeyboardInterrupt:
        print(f'{name}: interrupted', file=sys.stderr)
        return INTERRUPTED
    except Exception as err:  # the last resort: one line for the user, the traceback in a log file
        return internal_error(name, err)


def flushed(name, status):
    """The exit status once what the tool printed is sent: standard output that can take no more (a full device)
    is the tool's error line and exit 1 where it had none, not the interpreter's status 120 as it flushes at exit;
    a reader that went away (`| head`) leaves nothing more to say."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        drop_stdout()
    except OSError as err:
        drop_stdout()
        if status == OK:
            return error(name, f'cannot write to standard output: {err.strerror or err}', FAILURE)
    return status


def drop_stdout():
    """Standard output can take no more (a closed pipe, a full device): send what is left in its buffer, and
    anything later, to /dev/null, so that the interpreter's flush at exit cannot fail."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stdout.flush()


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a --help or usage message that cannot be written (a full disk, a closed pipe) is
    an error, not a silent success: argparse itself drops the OSError; and every parse ends with check_outputs,
    so that no option declared with add_output lands on an input or on another output."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        check_outputs(parsed)
        return parsed, extras

    def _print_message(self, message, file=None):
        if message:
            file = file or sys.stderr
            file.write(message)
            file.flush()


def stop(signum, frame):
    """A signal handler that stops as Ctrl-C does (SIGTERM: what job schedulers and container stops send)."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def handling(handler, *signums):
    """Route these signals to `handler` for the duration (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def internal_error(prog, err):
    """Report an unexpected exception in one line, with the full traceback written to a log file."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile('w', prefix=f'{Path(prog).name.replace(".", "-")}-', suffix='.log',
                                     delete=False) as log:
        log.write(''.join(traceback.format_exception(err)))
    return error(prog, f'{type(err).__name__}: {err} (an internal error: the traceback is in {log.name}; '
                       'please report it)', FAILURE)


# --- options -----------------------------------------------------------------------------------------------

def width(text):
    """A channel width factor: a number or a fraction in (0, 1], e.g. 0.125 or 1/8."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f'width must be a number or fraction such as 0.25 or 1/16, got {text!r}') from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f'width must be in (0, 1], got {text!r}')
    return value


def argument(lookup):
    """An argparse type from a lookup that raises ValueError on a bad name."""
    def convert(text):
        try:
            return lookup(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return convert


model = argument(registry.get)  # a model name -> its registry declaration
trainable = argument(registry.trainable)  # a trainable FCN's name -> its registry declaration


class Output(type(Path())):
    """A path a tool writes: the value of every option declared with add_output (paths made from it, out / name,
    stay Outputs). check_outputs keeps each off every other path the tool was given."""


def output_path(text):
    if not text:
        raise argparse.ArgumentTypeError('an empty path names no file (it would be the current folder)')
    return Output(text)


def output(text):
    """add_output's argparse type for a file: not a folder that is there (the file could not be put in its place,
    and only once the work is done)."""
    path = output_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a folder: name the file to write')
    return path


def output_folder(text):
    """add_output's argparse type for a folder: not a file that is there."""
    path = output_path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f'{text} is a file, not a folder: name the folder to write into')
    return path


def add_output(ap, *flags, folder=False, **kwargs):
    """An option naming a file (or, with `folder`, a folder) the tool writes: its value (and its default) an
    Output, kept apart from every input and every other output by check_outputs before anything is written."""
    if kwargs.get('default') is not None:
        kwargs['default'] = Output(kwargs['default'])
    return ap.add_argument(*flags, type=output_folder if folder else output, **kwargs)


def file_key(path):
    """What two paths share when they name one file: its device and inode where it exists (hard links too), else
    its absolute path with the symbolic links resolved (a loop resolves no further: Python 3.11 raises on it)."""
    path = Path(path)
    try:
        found = path.stat()
        return found.st_dev, found.st_ino
    except (OSError, ValueError):  # absent, a loop, a name no file can have
        pass
    try:
        return str(path.resolve())
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(path)


def paths_in(value):
    """The paths in one parsed value: the value itself, or the paths in a list of them (nargs)."""
    return [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, PurePath)]


def check_outputs(args, writes=None, inputs=()):
    """Refuse, before anything is written, an output that would land on an input (and destroy it) or on another
    output (one would replace the other). The outputs are the Outputs among `args`, except that `writes` maps an
    option's dest to the files it stands for (a folder's files, a default's), and the inputs every other path
    among `args` and `inputs`."""
    writes = writes or {}
    outputs, given = [path for files in writes.values() for path in files], [*inputs]
    for dest, value in vars(args).items():
        for path in paths_in(value):
            if not isinstance(path, Output):
                given.append(path)
            elif dest not in writes:
                outputs.append(path)
    seen = {file_key(path): path for path in given if path is not None}
    apart = set(seen)
    for path in outputs:
        key = file_key(path)
        if key in apart:
            raise BadInput(f'{path} is also an input ({seen[key]}): writing it would destroy that input; nothing '
                           'was written, choose another output')
        if key in seen:
            raise BadInput(f'{path} is also another output ({seen[key]}): one would replace the other; nothing was '
                           'written, choose another output')
        seen[key] = path


def add_width(ap, default=1.0, what='the nets'):
    ap.add_argument('--width', type=width, default=default, metavar='W',
                    help=f'channel width of {what}, a number or fraction such as 0.125 or 1/8 '
                         f'(default {Fraction(default).limit_denominator()}); reduced widths run fast')


def positive(kind):
    """An argparse type: a number of `kind` (int, float) > 0."""
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or value == float('inf'):
            raise argparse.ArgumentTypeError(f'{"a whole number" if kind is int else "a number"} > 0 is needed, '
                                             f'got {text!r}')
        return value
    return check


def seed(text):
    """A random seed Caffe takes: a whole number from 0 to 2**63 - 1 (its random_seed is an int64; -1 unseeds)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 63:
        raise argparse.ArgumentTypeError(f'a seed is a whole number from 0 to 2**63 - 1, got {text!r}')
    return value


def add_device(ap):
    ap.add_argument('--gpu', type=int, metavar='N', help='run on GPU N (needs a CUDA build: CUDA=1 make caffe); '
                    'default: the CPU')


def add_data_root(ap):
    ap.add_argument('--data-root', type=Path, metavar='DIR',
                    help='the folder holding the datasets as data/ lays them out (default: $FCN_DATA, else '
                         f'{registry.DATA})')


def add_dataset(ap, run=True):
    """--dataset (MODEL's architecture on another dataset) and, for the tools that use a trained net, --run."""
    ap.add_argument('--dataset', metavar='DIR|FILE.py', help="MODEL's architecture on another dataset: a folder "
                    'dataset (DIR holding classes.txt, images/, labels/, train.txt, val.txt) or a Python file that '
                    "declares one (default: MODEL's own dataset)")
    if run:
        ap.add_argument('--run', type=Path, metavar='RUN', help='a training run folder (fcn-train --out): its model, '
                        'width, dataset and best weights, where not given')


def add_model(ap):
    ap.add_argument('model', nargs='?', metavar='MODEL', help='model name, e.g. voc-fcn8s (fcn-netgen --list; '
                    'optional with --run)')
