"""The source to build: the pinned PyPI sdist (fetched once, hash-checked) or a BVLC-layout tree (CAFFE_SRC)."""

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .common import CACHE, SetupError, log, sha256

SDIST = 'brocolli-caffe'
SDIST_VERSION = '9.0.2'
SDIST_SHA256 = 'c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a'
SDIST_TARBALL = CACHE / 'src' / f'{SDIST}-{SDIST_VERSION}.tar.gz'  # fetched once, hash-checked


def fetch_sdist():
    """Download the pinned sdist into the cache (once) and verify its hash."""
    tarball = SDIST_TARBALL
    dest = tarball.parent
    if tarball.exists() and sha256(tarball) == SDIST_SHA256:
        return tarball
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
               '--no-build-isolation', '-d', tmp, f'{SDIST}=={SDIST_VERSION}']
        log('downloading the Caffe source distribution from PyPI')
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            raise SetupError(
                f'downloading {SDIST}=={SDIST_VERSION} from PyPI failed.\n'
                f'Check the network, or fetch it elsewhere and put it at {tarball}, '
                'or build your own tree with CAFFE_SRC=/path/to/caffe make caffe.') from None
        got = Path(tmp) / tarball.name
        digest = sha256(got)
        if digest != SDIST_SHA256:
            raise SetupError(f'{got.name} has sha256 {digest}, expected {SDIST_SHA256}; refusing to build it.')
        got.replace(tarball)
    return tarball


def unpack(tarball, into):
    # The sdist's hash is checked; the 'data' filter (Python >= 3.11.4, not Debian 12's 3.11.2) is one more guard.
    safe = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
    with tarfile.open(tarball) as tar:
        tar.extractall(into, **safe)
    (top,) = [p for p in Path(into).iterdir() if p.is_dir()]
    return top


def check_tree(src):
    needed = ['Makefile', 'src/caffe/proto/caffe.proto', 'python/caffe/_caffe.cpp',
              'include/caffe/layers/python_layer.hpp']
    missing = [n for n in needed if not (src / n).exists()]
    if missing:
        raise SetupError(f'CAFFE_SRC={src} is not a BVLC Caffe tree: missing {", ".join(missing)}')


def tree_digest(src):
    """A digest of a user's tree: every source file's path and contents."""
    h = hashlib.sha256()
    for sub in ('Makefile', 'include', 'src', 'python/caffe'):
        for p in sorted((src / sub).rglob('*') if (src / sub).is_dir() else [src / sub]):
            if p.is_file() and p.suffix not in ('.pyc', '.o'):
                h.update(str(p.relative_to(src)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()
