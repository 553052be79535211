"""Repository layout rules that pytest itself would only report as a collection error in CI."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique():
    # tests/ has no __init__.py files (rootdir-relative imports), so two test files with one
    # basename in different folders make pytest abort the whole run at collection.
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
