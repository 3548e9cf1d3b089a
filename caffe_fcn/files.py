"""Writing files that are whole or absent, with the permissions the user's umask gives, and never onto an input."""
import os
import tempfile
from pathlib import Path


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
    a, b = Path(a), Path(b)
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_apart(outputs, inputs):
    """Refuse, before anything is written, an output path that would land on an input (and destroy it)."""
    from caffe_fcn.cli import BadInput

    for out in (o for o in outputs if o is not None):
        clash = next((given for given in inputs if given is not None and same_file(out, given)), None)
        if clash is not None:
            raise BadInput(f'{out} is also an input ({clash}): writing it would destroy that input; nothing was '
                           'written, choose another output')


def reserve(folder, sizes, what):
    """Prove, before a writer that cannot fail cleanly (Caffe aborts the process on a failed write) writes files
    of these byte sizes into `folder`, that they fit: all are allocated for real there at once, so a full disk, a
    quota, a file-size limit or a read-only folder is a one-line Failure here, while nothing has been written."""
    from caffe_fcn.cli import Failure

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
