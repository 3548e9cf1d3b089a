"""The project's modules import each other without a circle (every import counted, also those inside
functions), and the packages' __init__ modules load no Caffe."""
import ast
import sys
from common import ENV, REPO, checked, child

PACKAGES = ('caffe_fcn', 'netgen', 'surgery', 'solvers')


def module_name(path):
    parts = path.relative_to(REPO).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports(path, name):
    """The project modules `path` imports (`from pkg import mod` counts as pkg.mod when that is a module)."""
    found = set()
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                base = '.'.join(filter(None, [package.rsplit('.', node.level - 1)[0], base]))
            found |= {base} | {f'{base}.{alias.name}' for alias in node.names}
    return found


def graph():
    """Module -> the project modules it imports; a module's own parent packages do not count (Python imports
    them first whatever the module does)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob('*.py')}
    return {name: sorted(m for m in imports(path, name) if m in modules and not (name + '.').startswith(m + '.'))
            for name, path in modules.items()}


def cycle(edges):
    """One import circle as a list of modules, or None."""
    state = {}

    def visit(node, trail):
        state[node] = 'open'
        for nxt in edges[node]:
            if state.get(nxt) == 'open':
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, trail + [nxt])):
                return found
        state[node] = 'done'
        return None

    return next((c for node in edges if node not in state and (c := visit(node, [node]))), None)


def test_no_import_circle():
    assert cycle(graph()) is None


def test_the_circle_finder_finds_one():
    assert cycle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == ['a', 'b', 'c', 'a']


def print_whether_importing_loads_caffe():
    """Import every package, solvers.metrics and caffe_fcn.cli; print whether Caffe got loaded on the way."""
    import importlib
    for module in (*PACKAGES, 'solvers.metrics', 'caffe_fcn.cli'):
        importlib.import_module(module)
    print('caffe' in sys.modules)


def test_importing_the_packages_loads_no_caffe():
    result = child(print_whether_importing_loads_caffe)
    assert result.returncode == 0 and result.stdout.strip() == 'False', result.stderr


def print_environment_changes():
    """Import every tool's module; print the environment variables that importing them set or changed (after the
    libraries they use: scipy.io sets KMP_DUPLICATE_LIB_OK for itself)."""
    import importlib
    import os

    import scipy.io  # noqa: F401
    before = dict(os.environ)
    for module in ('caffe_fcn.cli', 'netgen.cli', 'surgery.cli', 'surgery.published', 'solvers.driver', 'solvers.score',
                   'solvers.infer', 'caffe_fcn.datalayers.cli', 'caffe_fcn.export.cli', 'caffe_fcn.bench.__main__'):
        importlib.import_module(module)
    print(sorted(k for k, v in os.environ.items() if before.get(k) != v))


def test_importing_the_tools_changes_no_environment():
    """Caffe's log level is the tool's to set as it starts (cli.tool), not an import's side effect."""
    env = {k: v for k, v in ENV.items() if k != 'GLOG_minloglevel'}
    assert checked(child(print_environment_changes, env=env)).strip() == '[]'
