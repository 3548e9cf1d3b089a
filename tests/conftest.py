"""Fixtures more than one test module uses, and the rule for skips.

Under `make test` (FCN_STRICT_SKIPS=1) a skip means a missing part (the export extra, the build cache, ../shared)
and fails the run, except in tests marked `gpu` or `build_kind`, which a CPU-only machine cannot run; the summary
says which skips were allowed.
"""
import os

import pytest

# The tools run in this process too, and glog reads its level once, when Caffe is first imported (at collection):
# quiet, as each tool makes it for itself.
os.environ.setdefault('GLOG_minloglevel', '2')

from test_published import server  # noqa: F401  (a weights host on 127.0.0.1)

ALLOWED = ('gpu', 'build_kind')  # markers whose tests may skip on this machine
allowed = {marker: 0 for marker in ALLOWED}  # skips counted by marker
refused = []  # 'test id: reason' of every other skip


def pytest_runtest_logreport(report):
    if report.skipped:
        marker = next((m for m in ALLOWED if m in report.keywords), None)
        if marker:
            allowed[marker] += 1
        else:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            refused.append(f'{report.nodeid}: {reason}')


def strict():
    return os.environ.get('FCN_STRICT_SKIPS') == '1'


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    if any(allowed.values()):
        write('skips allowed: ' + ', '.join(f'{n} {m}' for m, n in allowed.items() if n))
    if refused:
        write(f'{len(refused)} skips {"fail this run" if strict() else "would fail make test"} '
              '(a missing part, not a missing device):')
        for line in refused:
            write('  ' + line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if strict() and refused and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
