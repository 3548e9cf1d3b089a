#!/usr/bin/env bash
# The first device call (docs/GPU.md): the GPU machine's Python headers into $OUT/python-headers.tar.gz, laid out
# for make gpu-bundle (PY_INCLUDE=DIR/python3.X once unpacked into DIR), and the machine's versions into
# $OUT/machine.json and on stdout: Python, numpy, protobuf, PyTorch and its CUDA and cuDNN, nvcc, the driver, the GPU,
# and where NVIDIA's libraries that Caffe loads are. Seconds; nothing is installed.
#   usage: OUT=DIR [PYTHON=python3] bash scripts/gpu_headers.sh
set -euo pipefail
out=${OUT:?set OUT to the folder to write into (the device call sets it)}
py=${PYTHON:-python3}
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# The include folder; Debian and Ubuntu add a pyconfig.h under include/<multiarch>/python3.X, which theirs includes.
read -r inc multi ver < <("$py" -c 'import sys, sysconfig as s
print(s.get_paths()["include"], s.get_config_var("MULTIARCH") or "-", "%d.%d" % sys.version_info[:2])')
[ -f "$inc/Python.h" ] || { echo "gpu_headers: error: no Python.h in $inc (install python$ver-dev)" >&2; exit 1; }
cp -rL "$inc" "$stage/python$ver"
platform=$(dirname "$inc")/$multi/python$ver
if [ "$multi" != - ] && [ -d "$platform" ]; then
  mkdir -p "$stage/$multi" && cp -rL "$platform" "$stage/$multi/"
fi
tar -czf "$out/python-headers.tar.gz" -C "$stage" .
"$py" - "$out/machine.json" <<'PYEOF'
import glob
import importlib
import json
import os
import platform
import subprocess
import sys
import sysconfig


def command(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def module_version(name):
    try:
        return importlib.import_module(name).__version__
    except Exception as err:  # absent or broken: say which
        return f'not importable ({type(err).__name__})'


found = {'python': platform.python_version(), 'executable': sys.executable, 'include': sysconfig.get_paths()['include'],
         'os': command('sh', '-c', '. /etc/os-release && echo "$PRETTY_NAME"'), 'glibc': platform.libc_ver()[1]}
found |= {name: module_version(name) for name in ('numpy', 'google.protobuf', 'scipy', 'skimage', 'PIL', 'torch')}
try:
    import torch
    found |= {'torch_cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
              'gpus': [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
except Exception as err:
    found['torch_cuda'] = f'unknown ({type(err).__name__})'
found['nvidia_smi'] = command('nvidia-smi', '--query-gpu=name,driver_version,memory.total', '--format=csv,noheader')
nvcc = command('nvcc', '--version')
found['nvcc'] = nvcc.splitlines()[-1] if nvcc else None
sites = [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]
found['nvidia_libraries'] = {lib: sorted({os.path.realpath(p) for s in sites + ['/usr/local/cuda/lib64']
                                          for p in glob.glob(f'{s}/**/{lib}', recursive=True)})
                             for lib in ('libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10')}
with open(sys.argv[1], 'w') as f:
    json.dump(found, f, indent=1)
for key, value in found.items():
    print(f'{key}: {value}')
PYEOF
echo "gpu-headers: $(du -k "$out/python-headers.tar.gz" | cut -f1) KiB of Python $ver headers in $out/python-headers.tar.gz; unpack into DIR and give make gpu-bundle PY_INCLUDE=DIR/python$ver"
