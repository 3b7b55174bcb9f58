"""No silent skips: a test that skips fails the run, unless what it lacks is a declared
optional extra (an extra of setup.cfg that the `test` extra, and so the README's test
command, does not install).

A test that needs such an extra is marked `@pytest.mark.optional_extra("torch")` and
skips with `pytest.importorskip("torch")`; a module that needs it throughout may call
`pytest.importorskip("torch")` at import. Any other skip, or an optional-extra skip of an
unmarked test, is reported as a failure. `SISR_ALLOW_SKIPS=1` turns the rule off (a
partial environment, e.g. without the test extra's packages).
"""

import os

import pytest

# extra -> the modules whose absence it explains
OPTIONAL_EXTRAS = {"torch": ("torch",)}


def skips_allowed():
    return os.environ.get("SISR_ALLOW_SKIPS", "") not in ("", "0")


def missing_optional_extra(reason):
    """The declared optional extra that a skip reason says is not installed, or None."""
    for extra, modules in OPTIONAL_EXTRAS.items():
        if any(f"could not import '{module}'" in reason for module in modules):
            return extra
    return None


def skip_reason(report):
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 \
        else str(longrepr)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "optional_extra(name): the test needs a declared optional extra and "
                   "skips without it (tests/skips.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or skips_allowed():
        return
    reason = skip_reason(report)
    extra = missing_optional_extra(reason)
    marker = item.get_closest_marker("optional_extra")
    if extra is not None and marker is not None and extra in marker.args:
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped ({reason}): only a test marked optional_extra(...) may skip, "
                       f"and only for a declared optional extra {sorted(OPTIONAL_EXTRAS)} "
                       "(tests/skips.py; SISR_ALLOW_SKIPS=1 allows every skip)")


_refused_modules = []


def pytest_collectreport(report):
    # A module that skips at import (pytest.importorskip at module level).
    if report.skipped and not skips_allowed():
        reason = skip_reason(report)
        if missing_optional_extra(reason) is None:
            _refused_modules.append(f"{report.nodeid}: skipped ({reason})")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _refused_modules:
        terminalreporter.section("skipped modules (not a declared optional extra)")
        for line in _refused_modules:
            terminalreporter.line(line)


def pytest_sessionfinish(session, exitstatus):
    if _refused_modules and exitstatus in (pytest.ExitCode.OK,
                                           pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
