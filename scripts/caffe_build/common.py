"""What every part of the build shares: its error, its log, running a command, the cache."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

CACHE = Path(os.environ.get('FCN_CACHE', Path.home() / '.cache' / 'fcn'))


class SetupError(Exception):
    """A set-up step failed; the message says what to do."""


def log(msg):
    print(f'[caffe] {msg}', flush=True)


def run(cmd, **kw):
    log('$ ' + ' '.join(map(str, cmd)))
    subprocess.run(cmd, check=True, **kw)


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def pip_install(packages, instead=''):
    """pip install these into the running venv; SetupError, with what to do `instead`, when it cannot."""
    try:
        run([sys.executable, '-m', 'pip', 'install', '--quiet', *packages])
    except subprocess.CalledProcessError:
        raise SetupError(f'pip could not install {" ".join(packages)}: is PyPI reachable?{instead}') from None


def script(main):
    """A build script's main, as the user sees it: a SetupError or an interruption is one error line and exit 1."""
    try:
        main()
    except SetupError as e:
        print(f'\nerror: {e}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('\nerror: interrupted', file=sys.stderr)
        sys.exit(1)
