"""scripts/build_caffe.py's recipe, without building: every combination of options patches the pinned
source cleanly, and the generated Makefile.config links the right BLAS."""

import importlib.util
import itertools
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
