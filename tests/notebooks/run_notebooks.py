"""Execute notebooks through a real Jupyter kernel with nbclient; one JSON line per notebook.

Standalone on purpose (only nbclient + nbformat, which JupyterLab's own dependencies bring): the
tests pipe this file into the environment's Python on the host or in the container
(`python - KERNEL DIR NOTEBOOK...`), so the notebooks run where a user runs them, with the
kernel the Lab offers (its kernelspec, environment variables included). Exit 1 on the first
notebook with a failing cell, after printing which cell and why.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def text_of(cell: dict) -> str:
    """Everything a code cell showed: streams and plain-text results."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
            if "image/png" in out["data"]:
                parts.append("<image/png>\n")
    return "".join(parts)


def main(kernel: str, folder: str, names: list[str]) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for name in names:
        path = Path(folder) / name
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, kernel_name=kernel, timeout=600, resources={"metadata": {"path": str(path.parent)}}
        )
        start = time.monotonic()
        error = None
        try:
            client.execute()
        except CellExecutionError as exc:
            error = str(exc)[-3000:]
        record = {
            "notebook": name,
            "seconds": round(time.monotonic() - start, 2),
            "ok": error is None,
            "error": error,
            "output": "".join(text_of(c) for c in nb.cells if c.cell_type == "code"),
        }
        print(json.dumps(record), flush=True)
        if error is not None:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
