"""What the test modules share: the project's folders, the tools' environment and running a child process.

A program that must run in a child process (a failed Caffe CHECK aborts the process, not pytest; a module must be
imported fresh) is a plain function of a test module, run by `child(function, *args)`: linted and read like the
rest, never a string.
"""
import importlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / 'tests'
SHARED = REPO.parent / 'shared'
BIN = Path(sys.executable).parent  # the console scripts installed beside this Python
ENV = {**os.environ, 'PYTHONPATH': str(REPO)}  # as a user runs the tools (Caffe's log level left to them)
QUIET = {**ENV, 'GLOG_minloglevel': '2'}  # for programs of the tests' own that build Caffe nets


def run(*args, env=ENV, cwd='/', timeout=600, **kw):
    """A command with its output captured as text, from an unrelated working directory by default."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout, **kw)


def child_command(function, *args, path_first=None):
    """The argv that calls `function(*args)` (strings) in a fresh interpreter. `path_first` (default: the project)
    comes before the tests' folder on the path, so a module of the same name there wins (the reference's)."""
    head = [str(path_first or REPO), str(TESTS)]
    code = ('import sys; sys.path[:0] = sys.argv[1:3]; del sys.argv[1:3]; import importlib; '
            f'importlib.import_module({function.__module__!r}).{function.__name__}(*sys.argv[1:])')
    return [sys.executable, '-c', code, *head, *map(str, args)]


def child(function, *args, path_first=None, env=QUIET, cwd='/', timeout=600, **kw):
    """Run `function(*args)` in a child process (see child_command); its CompletedProcess."""
    assert getattr(importlib.import_module(function.__module__), function.__name__) is function, function
    env = {**env, 'PYTHONPATH': str(path_first or REPO)}
    return subprocess.run(child_command(function, *args, path_first=path_first), capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout, **kw)


def checked(result):
    """A CompletedProcess that exited 0 (else its stderr's end in the assertion); its stdout."""
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def save_stand_in(model, width, path):
    """A child program: `model`'s deploy net at `width` with surgery's He-initialized stand-in for the converted
    ILSVRC trunk (seed 0), saved as the caffemodel `path`."""
    import netgen
    import surgery

    net = surgery.instantiate(netgen.net(model, 'deploy', width=float(width)))
    surgery.stand_in_trunk(net, seed=0)
    net.save(str(path))
