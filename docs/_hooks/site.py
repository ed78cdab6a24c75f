"""MkDocs hooks (mkdocs.yml ``hooks:``): pages made at build time from files that live elsewhere in the
repository, so each is written once.

- ``tutorials/<notebook>.md`` from each ``notebooks/*.ipynb``: its Markdown cells as they are, its code
  cells as Python blocks (the notebooks are committed without outputs; run them in Jupyter to see them).
- ``architecture.md``: ARCHITECTURE.md, the map at the repository's root, under the page's own heading.

Uses nbformat only (no nbconvert, no kernel): the site builds offline.
"""

from __future__ import annotations

import os

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def notebook_markdown(path: str) -> str:
    """A notebook as a Markdown page: prose as written, code in fenced blocks, a note on how to run it."""
    import nbformat

    book = nbformat.read(path, as_version=4)
    name = os.path.basename(path)
    parts = []
    for i, cell in enumerate(book.cells):
        source = cell.source.strip("\n")
        if cell.cell_type == "markdown":
            parts.append(source)
        elif cell.cell_type == "code" and source:
            parts.append(f"```python\n{source}\n```")
        if i == 0:
            parts.append(
                f'!!! note "Run it"\n    This page is the notebook `notebooks/{name}` without its outputs. Run it '
                f"top to bottom (offline, a few minutes on a CPU):\n\n"
                f'    ```bash\n    pip install -e ".[notebooks]"\n    jupyter lab notebooks/{name}\n    ```'
            )
    return "\n\n".join(parts) + "\n"


def notebook_pages() -> dict[str, str]:
    """``tutorials/<stem>.md`` -> its Markdown, for every notebook in notebooks/."""
    folder = os.path.join(ROOT, "notebooks")
    return {
        f"tutorials/{name[:-6]}.md": notebook_markdown(os.path.join(folder, name))
        for name in sorted(os.listdir(folder))
        if name.endswith(".ipynb")
    }


def architecture_page() -> str:
    with open(os.path.join(ROOT, "ARCHITECTURE.md"), encoding="utf-8") as f:
        return f.read()


def on_files(files, config):
    pages = {**notebook_pages(), "architecture.md": architecture_page()}
    for path, content in pages.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=content))
    return files


def on_config(config):
    for path in (os.path.join(ROOT, "notebooks"), os.path.join(ROOT, "ARCHITECTURE.md")):
        config.watch.append(path)  # mkdocs serve rebuilds when a notebook or the map changes
    return config
