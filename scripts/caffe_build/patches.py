"""The recipe's changes to Caffe's C++: unified diffs in scripts/patches/, applied with GNU patch, by option.

Each patch opens with why it exists and what tests or measures it (scripts/patches/README.md says how to make
one). The bytes of every patch a build applies are in its cache key (summary): editing one rebuilds."""

import hashlib
import subprocess
from pathlib import Path

from .common import SetupError, log

PATCH_DIR = Path(__file__).resolve().parent.parent / 'patches'

# Applied in this order: 'always' to every build, each other group when its option is on. A patch is made
# against the tree that the 'always' group and the earlier patches of its own group leave.
PATCHES = {
    'always': ['makefile-opt', 'crop-once', 'nan-max-pool', 'read-limit'],
    'openmp': ['openmp-im2col', 'openmp-relu', 'openmp-max-pool'],
    'share_col': ['shared-col-buffer'],
    'col_tiles': ['col-tiles'],
    'cuda': ['cuda13-device-query', 'proposal-backward-gpu', 'gpu-on-cpu'],
}

# Not Caffe's: Boost.Python's sources for Pythons after 3.9 (caffe_build.target applies it for make gpu-bundle).
BOOST_PYTHON = 'boost-python-py311'

# Fixes that BVLC master has already, in other words: a CAFFE_SRC tree they do not fit is built as it is.
IF_THEY_FIT = {'crop-once', 'read-limit'}

# What a patch that does not fit tells the user to do about it.
WAY_OUT = {
    'always': 'every build applies it',
    'openmp': 'CAFFE_OPENMP=0 leaves it out',
    'share_col': 'CAFFE_SHARE_COL=0 leaves it out',
    'col_tiles': 'CAFFE_COL_TILES=0 leaves it out',
    'cuda': 'a CUDA build needs it',
}

PATCH = ['patch', '-p1', '--forward', '--fuzz=0', '--batch', '--no-backup-if-mismatch', '--reject-file=-']


def chosen(options):
    """(group, name) of every patch a build with these options applies, in order."""
    return [(group, name) for group, names in PATCHES.items() if group == 'always' or group in options
            for name in names]


def patch_file(name):
    return PATCH_DIR / f'{name}.patch'


def summary(options):
    """The Makefile.config comment naming the patches, with a digest of their bytes (so in the cache key)."""
    names = [name for _, name in chosen(options)]
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode() + b'\0' + patch_file(name).read_bytes() + b'\0')
    return f'# patched: {", ".join(names)} (patch digest {h.hexdigest()[:12]})'


def run_patch(src, name, dry_run):
    cmd = PATCH + ['--dry-run'] * dry_run + ['--input', str(patch_file(name))]
    try:
        return subprocess.run(cmd, cwd=src, capture_output=True, text=True)
    except FileNotFoundError:
        raise SetupError('the build patches Caffe with GNU patch, which is not installed: '
                         'apt-get install patch (make setup-system does)') from None


def apply(src, group, name):
    """Apply one patch, or none of it: it is tried first (--dry-run), so a misfit leaves the tree as it was."""
    trial = run_patch(src, name, dry_run=True)
    if trial.returncode and name in IF_THEY_FIT:
        log(f'{name}.patch does not fit this tree (it may have the fix already): left as it is')
        return
    if trial.returncode:
        said = '; '.join(line.strip() for line in (trial.stdout + trial.stderr).splitlines() if line.strip())
        raise SetupError(f'cannot apply scripts/patches/{name}.patch to {src}: {said}. This Caffe source differs '
                         f'from the pinned one the patch was made for ({WAY_OUT[group]})')
    done = run_patch(src, name, dry_run=False)
    if done.returncode:  # fit in the trial, so this is the system's fault (a full disk, permissions)
        raise SetupError(f'patch failed on {src} after a clean trial run: {(done.stdout + done.stderr).strip()}')


def patch_source(src, options):
    """Apply the recipe's patches for these options; SetupError when the source is not what they were made for."""
    for group, name in chosen(options):
        apply(src, group, name)
