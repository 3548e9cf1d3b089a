"""What every part of the build shares: its error, its log, running a command, the cache."""

import hashlib
import os
import subprocess
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
