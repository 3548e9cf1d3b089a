"""scripts/build_caffe.py's recipe, without building: every combination of options patches the pinned
source into the very tree it made before the patches became files, the generated Makefile.config links the right
BLAS, and the wheel tools package, repair and check the build."""

import configparser
import hashlib
import importlib.util
import itertools
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'build_caffe.py'
spec = importlib.util.spec_from_file_location('build_caffe', SCRIPT)
build_caffe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_caffe)
patches, relocate, wheels = build_caffe.patches, build_caffe.relocate, build_caffe.wheels

OPTIONS = ('openmp', 'share_col', 'col_tiles', 'cuda')

# tree_digest of the pinned sdist patched for each set of options, as recorded from the Python patcher
# (text replacements, a regex for the read limit and one for gpu-on-cpu) that scripts/patches/ replaced: the
# patch files make the same trees byte for byte. A change to a patch changes some of these on purpose.
PATCHED_TREES = {
    'published': '86348e4237e7b2173fd305d4bdf17416028fc6d7c42d4f113d256e4f3f4d40e8',
    'col_tiles': '028a24dca866d60827b5bd9a08fb2699fb60408b97d833e65a9f4c696cac21d8',
    'cuda': '764b50a3c98b8a608f2108acbf410ec8fe47396231ad1e7b7db706c96f63ed5e',
    'openmp': 'aa27b967f765a68c6acdfa9810ca7503857f76482df6163432c801d6b7517aeb',
    'share_col': '7d523dbce53167485702589c1fa877840cb4a62c4de483422c9f912993e6d2fd',
    'col_tiles+cuda': '535f06670727ff9750e67cf48368a9e1911851b0afd5bd9bb137596f320132d3',
    'col_tiles+openmp': 'effd91604a39fda9697eacf2e379f4f4f3c764b1837268fa89e9472dea23a2e2',
    'col_tiles+share_col': '2ca6a5e10461205ba66bbc7fe4360492cf27773449bc287fbfce2884b731939a',
    'cuda+openmp': '6c6aa55a14e1cb13ba00656c381cf7a2acf50df2053071f239a0e5bfcfc9830e',
    'cuda+share_col': '8afb00bb3a5a0cbbb8cd79a1054a6eca3126a87b6ea2a3d9900fbdce4efc7f3e',
    'openmp+share_col': '2ac050154f51b98df100f9290658f5721b39967c8f0b161058f429bf4fb6440f',
    'col_tiles+cuda+openmp': '8f0b3a63bed384684e98900ab4de9647bffd0edf23373684ccb97142585151d8',
    'col_tiles+cuda+share_col': '9133636d0418987f2c2743fda9cb9fb777c3abe03ca8daa12c114848fbb73937',
    'col_tiles+openmp+share_col': '1d5f9b89389ff8f94f8d2f5fee15aaa6474f8770460c2ece71d157c7467ceb78',
    'cuda+openmp+share_col': '1900289fa3a172a1527d4685d95d3860d627a0dc00fb148e3a6b2784e032e262',
    'col_tiles+cuda+openmp+share_col': 'de7dfaa22876983a8e718e18c2f07680a1adfb264815706b29bf790f9df0856f',
}


def tree_digest(root):
    """Every file's path, owner-execute bit and bytes (the 'data' tar filter of newer Pythons keeps that bit)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob('*')):
        if p.is_file() and not p.is_symlink():
            h.update(f'{p.relative_to(root)}\0{p.stat().st_mode & 0o100:o}\0'.encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.fixture(scope='module')
def sdist():
    tarball = build_caffe.source.SDIST_TARBALL
    if not tarball.exists():
        pytest.skip(f'the pinned Caffe sdist is not cached at {tarball} (make caffe fetches it)')
    return tarball


def name(options):
    return '+'.join(sorted(options)) or 'published'


@pytest.mark.parametrize('options', [set(c) for n in range(5) for c in itertools.combinations(OPTIONS, n)], ids=name)
def test_every_option_set_patches_the_pinned_source_as_before(tmp_path, sdist, options):
    src = build_caffe.source.unpack(sdist, tmp_path)
    patches.patch_source(src, options)
    assert tree_digest(src) == PATCHED_TREES[name(options)], f'the {name(options)} tree is now {tree_digest(src)}'
    crop = (src / 'src/caffe/layers/crop_layer.cpp').read_text()
    assert 'one copy per row' in crop
    conv = (src / 'src/caffe/layers/base_conv_layer.cpp').read_text()
    assert ('tiled_forward(fcn_gemm' in conv) == ('col_tiles' in options)
    assert conv.count('if (fcn_gemm.t.rows) return') == 3 * ('col_tiles' in options)
    relu = (src / 'src/caffe/layers/relu_layer.cpp').read_text()
    assert relu.count('#pragma omp parallel for') == 2 * ('openmp' in options)
    assert 'SetTotalBytesLimit(2147483647)' in (src / 'src/caffe/util/io.cpp').read_text()
    assert ('Backward_cpu(top, propagate_down, bottom);' in (src / 'src/caffe/layers/relu6_layer.cpp').read_text()) \
        == ('cuda' in options)


def test_a_patch_that_does_not_fit_is_a_clear_error_and_changes_nothing(tmp_path, sdist):
    src = build_caffe.source.unpack(sdist, tmp_path)
    conv = src / 'src/caffe/layers/base_conv_layer.cpp'
    conv.write_text(conv.read_text().replace('weight_cpu_gemm(const Dtype* input,', 'weight_cpu_gemm(const Dtype* in,'))
    before = conv.read_bytes()
    with pytest.raises(build_caffe.SetupError, match='col-tiles.patch .*CAFFE_COL_TILES=0'):
        patches.patch_source(src, {'col_tiles'})
    assert conv.read_bytes() == before  # the trial run found the misfit: no hunk of it was applied
    assert not [p for p in src.rglob('*') if p.suffix in ('.orig', '.rej')]


def test_a_tree_that_has_the_crop_fix_its_own_way_is_built_as_it_is(tmp_path, sdist):
    """BVLC master copies each row once, in other words than crop-once.patch fits (and its read limit is 2 GiB)."""
    src = build_caffe.source.unpack(sdist, tmp_path)
    crop = src / 'src/caffe/layers/crop_layer.cpp'
    crop.write_text(crop.read_text().replace('// prepare index vector reduced(red)', '// index vectors'))
    before = crop.read_bytes()
    patches.patch_source(src, set())
    assert crop.read_bytes() == before
    assert '-DNDEBUG -O2' not in (src / 'Makefile').read_text()  # the others still apply


def test_every_patch_file_is_applied_and_says_why_it_exists():
    listed = [n for names in patches.PATCHES.values() for n in names] + [patches.BOOST_PYTHON]
    assert sorted(p.stem for p in patches.PATCH_DIR.glob('*.patch')) == sorted(listed)
    for n in listed:
        text = patches.patch_file(n).read_text()
        header = text[:text.index('\ndiff ')]  # patch skips the text before a diff
        assert header.startswith(f'{n}: ') and len(header.splitlines()) >= 3, n
        assert any(w in header for w in ('test', 'Tested', 'Measured')), f'{n}.patch does not say what tests it'


def test_openblas_with_openmp_links_the_openmp_build():
    """OpenBLAS's pthreads and OpenMP's threads would spin against each other (caffe_fcn/bench/README.md)."""
    for openmp, variant in ((False, 'openblas-pthread'), (True, 'openblas-openmp')):
        lines, rpaths = build_caffe.config.blas_config('open', 'x86_64-linux-gnu', openmp)  # make setup installs both
        assert any(line.startswith('BLAS_INCLUDE') and variant in line for line in lines)
        assert any(line.startswith('BLAS_LIB') and variant in line for line in lines)
        assert [variant in path for path in rpaths] == [True]


def test_blis_is_installed_by_the_setup():
    lines, _ = build_caffe.config.blas_config('blis', 'x86_64-linux-gnu', False)
    assert 'LIBRARIES += blis' in lines


def test_every_patch_applied_is_in_the_cache_key(tmp_path, monkeypatch):
    config = build_caffe.config.makefile_config(None, 'open', '-O2', set())
    tiled = build_caffe.config.makefile_config(None, 'open', '-O2', {'col_tiles'})
    assert config != tiled
    assert '# patched: makefile-opt, crop-once, nan-max-pool, read-limit (patch digest' in config
    edited = shutil.copytree(patches.PATCH_DIR, tmp_path / 'patches')
    crop = edited / 'crop-once.patch'
    crop.write_text(crop.read_text().replace('copies it once', 'copies it just once'))  # the header counts too
    monkeypatch.setattr(patches, 'PATCH_DIR', edited)
    assert build_caffe.config.makefile_config(None, 'open', '-O2', set()) != config


# --- the wheel tools (make caffe's cached wheel, make wheel) ---------------------------------------------------

def need(*tools):
    missing = [t for t in tools if not (Path(sys.executable).parent / t).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not in the venv (the test extra: pip install -e '.[test]')")


def built_tree(root):
    """What make_wheel takes from a built tree: python/caffe (tests and C++ left out) and libcaffe.so."""
    pkg = root / 'python' / 'caffe'
    (pkg / 'test').mkdir(parents=True)
    (pkg / '__init__.py').write_text('from .pycaffe import Net\n')
    (pkg / '_caffe.cpp').write_text('// compiled into _caffe.so\n')
    (pkg / 'test' / 'test_net.py').write_text('')
    (root / '.build_release' / 'lib').mkdir(parents=True)
    lib = root / '.build_release' / 'lib' / 'libcaffe.so.1.0.0'
    lib.write_bytes(b'a stand-in for the library')
    lib.chmod(0o755)
    return root


def test_the_cached_wheel_is_packed_by_the_wheel_tool_the_same_each_time(tmp_path):
    need('wheel')
    src, key = built_tree(tmp_path / 'src'), 'f' * 64
    path = wheels.make_wheel(src, tmp_path / 'cache', key)
    assert path.name == f'caffe-1.0.0+fcn.{key[:12]}-cp311-cp311-linux_x86_64.whl'
    assert list((tmp_path / 'cache').iterdir()) == [path]  # packed aside, then moved in whole
    files = wheels.read_wheel(path)
    dist_info = f'caffe-1.0.0+fcn.{key[:12]}.dist-info'
    assert sorted(files) == sorted(['caffe/__init__.py', 'caffe/libcaffe.so.1.0.0', f'{dist_info}/METADATA',
                                    f'{dist_info}/RECORD', f'{dist_info}/WHEEL'])
    with zipfile.ZipFile(path) as z:
        assert z.getinfo('caffe/libcaffe.so.1.0.0').external_attr >> 16 & 0o777 == 0o755
    assert relocate.record_problems(path, list(files)) == []
    again = wheels.make_wheel(src, tmp_path / 'again', key)
    assert again.read_bytes() == path.read_bytes()  # SOURCE_DATE_EPOCH: the same tree, the same wheel


def test_the_checker_sees_a_record_that_does_not_match(tmp_path):
    need('wheel')
    path = wheels.make_wheel(built_tree(tmp_path / 'src'), tmp_path / 'cache', 'f' * 64)
    tampered = tmp_path / 'tampered' / path.name
    tampered.parent.mkdir()
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(tampered, 'w') as out:
        for info in z.infolist():
            data = z.read(info)
            out.writestr(info, b'changed' if info.filename == 'caffe/__init__.py' else data)
        out.writestr('caffe/extra.py', b'')
    problems = relocate.record_problems(tampered, list(wheels.read_wheel(tampered)))
    assert any('caffe/__init__.py' in p and 'Hash mismatch' in p for p in problems)
    assert any('caffe/extra.py' in p for p in problems)


@pytest.fixture(scope='module')
def relocatable(tmp_path_factory):
    """The current build's cached wheel, repaired as make wheel does (about 10 s)."""
    need('auditwheel', 'patchelf', 'wheel')
    build = build_caffe.Build(build_caffe.parse_args([]))
    cached = build.cached_wheel()
    if cached is None:
        pytest.skip(f'no cached build for the current options (cache key {build.key[:12]}): make caffe builds it')
    return relocate.relocatable_wheel(cached, tmp_path_factory.mktemp('dist'), build.numpy_major), build


def test_the_tests_use_the_wheel_tools_the_build_pins():
    extras = configparser.ConfigParser()
    extras.read(Path(__file__).resolve().parents[1] / 'setup.cfg')
    assert set(wheels.WHEEL_TOOLS) <= set(extras['options.extras_require']['test'].split())


def metadata(files, field):
    (name,) = [n for n in files if n.endswith('.dist-info/METADATA')]
    return [line.split(': ', 1)[1] for line in files[name].decode().splitlines() if line.startswith(field + ': ')]


def test_the_wheel_bundles_all_but_glibc_and_declares_the_rest(relocatable):
    path, build = relocatable
    assert relocate.wheel_problems(path) == []
    assert path.name.endswith('-cp311-cp311-manylinux_2_34_x86_64.whl')  # Debian 12's glibc 2.36 and GCC 12
    files = wheels.read_wheel(path)
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
    folder = wheels.unpack(path, tmp_path / 'unpacked')
    (glog,) = folder.glob('caffe.libs/libglog-*')
    glog.unlink()
    broken = wheels.pack(folder, tmp_path / 'dist')
    problems = relocate.wheel_problems(broken)
    assert any(f'needs {glog.name}, which is neither bundled nor part of glibc' in p for p in problems)


def test_cuda_13_libraries_come_from_nvidia_wheels_through_site_packages():
    needed = ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10', 'libglog.so.1', 'libc.so.6']
    used = relocate.externals_of(needed)
    assert {folder for _, _, folder in used} == {'../nvidia/cu13/lib'}  # site-packages/nvidia/cu13/lib
    requires = relocate.requirements(used, 2)
    assert {'nvidia-cuda-runtime>=13,<14', 'nvidia-cublas>=13,<14', 'nvidia-curand>=10.4,<11'} <= set(requires)
    assert len(requires) == len(set(requires))  # cuBLAS and cuBLASLt are one wheel, required once
    with pytest.raises(build_caffe.SetupError, match='libcudart.so.12'):
        relocate.externals_of(['libcudart.so.12'])
