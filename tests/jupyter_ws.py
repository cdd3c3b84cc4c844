"""A Jupyter client for a remote server: REST for kernels, the kernel websocket for execution.

This speaks the same protocol JupyterLab speaks from the browser (Jupyter messaging v5 over
/api/kernels/<id>/channels), so a notebook executed here proves the tunnelled server works for
users, not just that a port answers. Notebooks are nbformat documents; outputs are filled in.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import nbformat
import requests
import websocket


@dataclass
class Kernel:
    base_url: str
    token: str
    kernel_id: str

    def _ws(self) -> websocket.WebSocket:
        url = self.base_url.replace("http", "ws", 1) + f"/api/kernels/{self.kernel_id}/channels"
        return websocket.create_connection(
            url, header=[f"Authorization: token {self.token}"], timeout=60
        )

    def execute(self, code: str, timeout: float = 120) -> list[dict]:
        """Run `code`; return its outputs as nbformat output dicts (raises on kernel errors)."""
        ws = self._ws()
        msg_id = uuid.uuid4().hex
        ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "dlenv-test",
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                        "date": "",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "buffers": [],
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": True,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": True,
                    },
                }
            )
        )
        outputs: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    outputs.append(
                        nbformat.v4.new_output("stream", name=content["name"], text=content["text"])
                    )
                elif kind in {"execute_result", "display_data"}:
                    outputs.append(
                        nbformat.v4.new_output(
                            kind,
                            data=content["data"],
                            **(
                                {"execution_count": content.get("execution_count")}
                                if kind == "execute_result"
                                else {}
                            ),
                        )
                    )
                elif kind == "error":
                    raise RuntimeError(f"{content['ename']}: {content['evalue']}")
                elif kind == "status" and content["execution_state"] == "idle":
                    return outputs
        finally:
            ws.close()
        raise TimeoutError(f"no idle status within {timeout}s")


def start_kernel(base_url: str, token: str, name: str | None = None) -> Kernel:
    body = {"name": name} if name else {}
    r = requests.post(
        f"{base_url}/api/kernels",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    r.raise_for_status()
    return Kernel(base_url, token, r.json()["id"])


def shutdown(kernel: Kernel) -> None:
    requests.delete(
        f"{kernel.base_url}/api/kernels/{kernel.kernel_id}",
        headers={"Authorization": f"token {kernel.token}"},
        timeout=30,
    )


def execute_notebook(
    base_url: str, token: str, nb: nbformat.NotebookNode, kernel_name: str | None = None
) -> nbformat.NotebookNode:
    """Execute every code cell of `nb` on a fresh remote kernel, filling in outputs."""
    kernel = start_kernel(base_url, token, kernel_name)
    try:
        for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
            cell.outputs = kernel.execute(cell.source)
            cell.execution_count = count
    finally:
        shutdown(kernel)
    nbformat.validate(nb)
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out:
                parts.append(out.data.get("text/plain", ""))
    return "".join(parts)
