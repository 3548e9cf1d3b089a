"""Writing files that are whole or absent, with the permissions the user's umask gives, their room proved first
where a writer cannot fail cleanly (which paths a tool may write at all is cli.check_outputs')."""
import os
import tempfile
from pathlib import Path

from caffe_fcn.cli import Failure, file_key


def current_umask():
    mask = os.umask(0o022)  # reading it means setting it: put it straight back
    os.umask(mask)
    return mask


def write_atomic(path, data):
    """Write bytes or text so that `path` is either the old file or the complete new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide a run from colleagues
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def same_file(a, b):
    """Whether two paths name one file: the same path once resolved, or (both existing) through a hard link."""
    return file_key(a) == file_key(b)


def allocate(path):
    """Allocate on the disk every byte of `path`, holes included (numpy's memory-mapped files start sparse): a full
    disk, a quota or a file-size limit is an OSError here, where a write into a memory map of a hole that finds no
    room dies with SIGBUS."""
    with open(path, 'r+b') as f:
        os.posix_fallocate(f.fileno(), 0, max(os.fstat(f.fileno()).st_size, 1))


def reserve(folder, sizes, what):
    """Prove, before a writer that cannot fail cleanly (Caffe aborts the process on a failed write) writes files
    of these byte sizes into `folder`, that they fit: all are allocated for real there at once, so a full disk, a
    quota, a file-size limit or a read-only folder is a one-line Failure here, while nothing has been written."""
    probes = []
    try:
        for size in sizes:
            fd, probe = tempfile.mkstemp(dir=folder, prefix='.reserve-', suffix='.tmp')
            probes.append(probe)
            try:
                os.posix_fallocate(fd, 0, max(size, 1))
            finally:
                os.close(fd)
    except OSError as err:
        raise Failure(f'cannot write {what} ({sum(sizes) >> 20} MB) into {folder}: {err.strerror or err}; nothing '
                      'was written and what was there is kept') from None
    finally:
        for probe in probes:
            os.unlink(probe)
