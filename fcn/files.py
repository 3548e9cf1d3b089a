"""Writing files that are whole or absent, with the permissions the user's umask gives."""
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
