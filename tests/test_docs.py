"""The documentation site builds with ``mkdocs build --strict`` (a broken link, anchor, nav entry or
API reference fails), with the pages made from notebooks/ and ARCHITECTURE.md."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
@pytest.mark.docs
def test_the_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tutorial = (site / "tutorials" / "01_backpropagation_by_hand" / "index.html").read_text()
    assert "Backpropagation by hand" in tutorial and "The backward pass, by the chain rule" in tutorial
    assert tutorial.count("backward") >= 5  # the code cells, highlighted
    architecture = (site / "architecture" / "index.html").read_text()
    assert "The flow of one run" in architecture
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "Train one run, as" in api  # zoo.train's docstring, by mkdocstrings
    assert "The run, finished, or stopped" in api


def test_the_hook_turns_a_notebook_into_a_page():
    import importlib.util

    spec = importlib.util.spec_from_file_location("zoo_docs_hook", ROOT / "docs" / "_hooks" / "site.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    pages = hook.notebook_pages()
    assert sorted(pages) == [f"tutorials/{p.stem}.md" for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    page = pages["tutorials/01_backpropagation_by_hand.md"]
    assert page.startswith("# 1. Backpropagation by hand")
    assert "```python\ndef backward(" in page
    assert "jupyter lab notebooks/01_backpropagation_by_hand.ipynb" in page


def test_the_readme_is_one_screen_of_links_into_the_site():
    import re

    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 50, "the README is one screen: move sections into docs/"
    assert "python -m pytest" in readme  # the command CI runs
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10
    for link in local:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
    nav = (ROOT / "mkdocs.yml").read_text()
    for link in local:
        if link.startswith("docs/") and link.endswith(".md"):
            assert link.removeprefix("docs/") in nav, f"{link} is linked from the README but not in the site's nav"
