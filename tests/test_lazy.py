"""tfcompress._lazy.attach: the one copy of the lazy-name machinery of the subpackages."""

from __future__ import annotations

import subprocess
import sys
import types
import warnings

import pytest

from tfcompress._lazy import attach


def _package(**kwargs):
    pkg = types.ModuleType("pkg")
    pkg.__all__ = ["sqrt", "tau"]
    names = {"sqrt": "math", "tau": "math:tau"}
    pkg.__getattr__, pkg.__dir__ = attach("pkg", names, vars(pkg), pkg.__all__, **kwargs)
    return pkg


def test_a_name_loads_on_first_use_and_is_cached():
    pkg = _package()
    assert "sqrt" not in vars(pkg) and "sqrt" in pkg.__dir__()
    assert pkg.sqrt(16.0) == 4.0 and "sqrt" in vars(pkg)
    assert pkg.tau > 6.28  # "module:attribute"
    with pytest.raises(AttributeError, match=r"module 'pkg' has no attribute 'cos'"):
        pkg.__getattr__("cos")


def test_a_deprecated_name_warns_and_names_the_new_spelling():
    pkg = _package(deprecated={"square_root": "math.sqrt"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pkg.__getattr__("square_root")(4.0) == 2.0
    assert any("pkg.square_root is now math.sqrt" in str(w.message) for w in caught)
    assert all(issubclass(w.category, DeprecationWarning) for w in caught)


def test_the_search_namespace_checks_a_budget_without_tensorflow():
    """The CLI validates --budget with tfcompress.search.parse_budget before loading anything."""
    code = (
        "import sys\n"
        "from tfcompress.search import parse_budget, Candidate\n"
        "print(parse_budget('20m'), Candidate(shrink=0.5).name, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1200.0", "shrink0.50", "False"]
