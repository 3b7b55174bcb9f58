"""Citations of docs/reference.md point at sections that exist; nothing cites the old SPEC."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CITATION = re.compile(r"docs/reference\.md §(\d+)")


def python_sources(*folders):
    for folder in folders:
        for root, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in names:
                if name.endswith(".py"):
                    with open(os.path.join(root, name), encoding="utf-8") as f:
                        yield os.path.relpath(os.path.join(root, name), ROOT), f.read()


def test_cited_sections_exist():
    with open(os.path.join(ROOT, "docs", "reference.md"), encoding="utf-8") as f:
        sections = set(re.findall(r"^## §(\d+) ", f.read(), re.MULTILINE))
    assert sections == {str(n) for n in range(1, 9)}
    cited = {(path, n) for path, text in python_sources("sisr", "tests")
             for n in CITATION.findall(text)}
    assert len({path for path, _ in cited}) >= 5
    missing = sorted((path, n) for path, n in cited if n not in sections)
    assert missing == []


def test_nothing_cites_a_spec_outside_the_repository():
    spec = re.compile(r"SPEC(\.md)?(:|\s*(section|§|\d))")
    assert [path for path, text in python_sources("sisr", "tests") if spec.search(text)] == []
