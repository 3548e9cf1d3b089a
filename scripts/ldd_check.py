#!/usr/bin/env python3
"""Every library of an installed pycaffe wheel, as the dynamic loader resolves it here: each must be found inside
the environment (the wheel's own caffe.libs/, other wheels' libraries) or be one that a manylinux wheel may take
from the system (glibc, the C++ runtime, zlib; relocate.SYSTEM_LIBS). Used by make wheel-check in a bare root and
by scripts/gpu_suite.sh. Prints one line per offender and a summary; exit 1 when there is one.
  usage: PYTHON scripts/ldd_check.py [--prefix DIR]   (default: the running Python's sys.prefix)
"""
import argparse
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caffe_build.relocate import DRIVER, SYSTEM_LIBS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n  usage')[0])
    ap.add_argument('--prefix', default=sys.prefix, help='the environment every library must resolve into')
    prefix = os.path.realpath(ap.parse_args().prefix) + '/'
    site = Path(sysconfig.get_paths()['purelib'])
    libs = sorted(p for folder in ('caffe', 'caffe.libs') for p in (site / folder).glob('*.so*'))
    bad, from_others = [], set()
    for lib in libs:
        for line in subprocess.run(['ldd', str(lib)], capture_output=True, text=True, check=True).stdout.splitlines():
            soname, _, where = line.strip().partition(' => ')
            path = os.path.normpath(where.split(' (')[0])  # ldd prints caffe/../../../libmkl_rt.so.3
            inside = os.path.realpath(os.path.dirname(path)).startswith(prefix) or path.startswith(prefix)
            if where.startswith('not found') or (where and not inside and soname not in SYSTEM_LIBS | {DRIVER}):
                bad.append(f'{lib.name}: {line.strip()}')
            elif inside and '/caffe.libs/' not in path and '/caffe/' not in path:
                from_others.add(path)
    if bad:
        print(*bad, sep='\n')
    print(f'ldd: {len(libs)} libraries in caffe/ and caffe.libs/, {len(bad)} dependencies resolved outside '
          f'{prefix.rstrip("/")} and glibc; from other wheels: {", ".join(sorted(from_others)) or "none"}')
    return 1 if bad or not libs else 0


if __name__ == '__main__':
    sys.exit(main())
