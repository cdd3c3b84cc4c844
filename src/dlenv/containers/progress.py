"""A readable view of a build's stream (`BuildKitProgress` at the end handles BuildKit's text).

The engine's classic builder (its API, what the Docker SDK speaks) sends JSON events: `stream` text such as
`Step 7/21 : RUN ...`, ` ---> Using cache`, the command's own output, then `aux` (the image ID) or
`error`. `BuildProgress` folds them into steps: on a terminal a live panel shows the running step,
its elapsed time and its last output lines, and each finished step leaves one line behind
(`✓ 7/21 RUN bash provision.sh  142.3s` or `cached`); without a terminal every event is printed as
plain text (a log CI can keep). The last lines of the running step are kept, so a failure can say
which step failed and show how it ended.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from dlenv.terminal import Terminal

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


@dataclass
class Step:
    number: int
    total: int
    instruction: str
    started: float = field(default_factory=time.monotonic)
    cached: bool = False
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    elapsed: float = 0.0
    stage: str | None = None  # BuildKit names steps "[builder 3/3]" rather than "Step 13/48"
    done: bool = False
    announced: bool = False

    @property
    def name(self) -> str:
        return self.stage if self.stage is not None else f"{self.number}/{self.total}"

    @property
    def label(self) -> str:
        text = " ".join(self.instruction.split())
        return text if len(text) <= 72 else text[:69] + "..."


@dataclass
class BuildResult:
    image_id: str | None = None
    error: str | None = None
    failed_step: Step | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.image_id is not None


class BuildProgress:
    """Consume `api.build(decode=True)` events; call `feed` per event, `close` at the end."""

    def __init__(self, terminal: Terminal, *, tail: int = 8) -> None:
        self.terminal = terminal
        self.tail = tail
        self.result = BuildResult()
        self.current: Step | None = None
        self._partial = ""
        self._live: Any = None
        if terminal.interactive:
            from rich.live import Live

            self._live = Live(
                self._render(), console=terminal.err, refresh_per_second=4, transient=True
            )
            self._live.start()

    # -- events -------------------------------------------------------------------------------
    def feed(self, event: dict[str, Any]) -> None:
        if "stream" in event:
            self._text(str(event["stream"]))
        elif "status" in event:  # pulling the base image
            status = str(event["status"])
            detail = event.get("progress") or event.get("id") or ""
            if self.terminal.interactive:
                self._line(f"{status} {detail}".strip(), echo=False)
            elif "progress" not in event:
                self._line(f"{status} {detail}".strip())
        elif "aux" in event:
            aux = event["aux"]
            if isinstance(aux, dict) and aux.get("ID"):
                self.result.image_id = aux["ID"]
        elif "error" in event:
            detail = event.get("errorDetail") or {}
            self.result.error = str(detail.get("message") or event["error"]).strip()
            self.result.failed_step = self.current
        if self._live is not None:
            self._live.update(self._render())

    def _text(self, text: str) -> None:
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        for raw in lines:
            line = ANSI_RE.sub("", raw).rstrip()
            match = STEP_RE.match(line)
            if match:
                self._finish_step()
                self.current = Step(int(match[1]), int(match[2]), match[3])
                self.result.steps.append(self.current)
                if not self.terminal.interactive and not self._quiet(self.current):
                    self.terminal.info(f"[{self.current.name}] {self.current.label}")
                continue
            if line.startswith(" ---> Using cache") and self.current:
                self.current.cached = True
                continue
            if (
                line.startswith(
                    (
                        " ---> ",
                        "Removing intermediate container",
                        "Successfully built",
                        "Successfully tagged",
                    )
                )
                or not line.strip()
            ):
                continue
            self._line(line)

    @staticmethod
    def _quiet(step: Step) -> bool:
        """Metadata steps (the SDK adds one LABEL per label) are not worth a line each."""
        return step.instruction.split(" ", 1)[0].upper() in {"LABEL", "ARG"}

    def _line(self, line: str, *, echo: bool = True) -> None:
        if self.current is not None:
            self.current.lines.append(line)
        if echo and not self.terminal.interactive:
            self.terminal.info(f"    {line}")

    def _finish_step(self) -> None:
        step = self.current
        if step is None:
            return
        step.elapsed = time.monotonic() - step.started
        if self.terminal.interactive and not self._quiet(step):
            from rich.markup import escape

            how = "[dim]cached[/dim]" if step.cached else f"[dim]{step.elapsed:.1f}s[/dim]"
            self.terminal.err.print(
                f"[green]✓[/green] {step.number}/{step.total} {escape(step.label)}  {how}"
            )

    def close(self) -> BuildResult:
        if self._partial.strip():
            self._text("\n")
        if self.result.error is None:
            self._finish_step()
        elif self.current is not None:
            self.current.elapsed = time.monotonic() - self.current.started
        if self._live is not None:
            self._live.stop()
        return self.result

    # -- the live panel -------------------------------------------------------------------------
    def _render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        step = self.current
        if step is None:
            return Text("sending build context ...", style="dim")
        head = Text.assemble(
            ("⠿ ", "cyan"),
            (f"{step.name} ", "bold"),
            step.label,
            (f"  {time.monotonic() - step.started:.0f}s", "dim"),
        )
        tail = [Text("   " + line[:160], style="dim") for line in list(step.lines)[-self.tail :]]
        return Group(head, *tail)


BK_HEADER = re.compile(r"^#(\d+) \[([^\]]+)\] (.*)$")
BK_OUTPUT = re.compile(r"^#(\d+) \d+\.\d+ ?(.*)$")
BK_STATE = re.compile(r"^#(\d+) (CACHED|DONE [\d.]+s|ERROR: .*|CANCELED)$")
BK_OTHER = re.compile(r"^#(\d+) (.*)$")
BK_ERROR = re.compile(r"^(?:ERROR|error): (.*)$")


class BuildKitProgress(BuildProgress):
    """The same view for BuildKit's `--progress=plain` text (`docker buildx build`).

    Lines look like `#10 [builder 3/3] RUN ...` (a step starts; repeated when its output resumes),
    `#10 12.34 <output>`, `#10 CACHED`, `#10 DONE 26.2s`, `#10 ERROR: <why>`, and at the end
    `ERROR: failed to solve: ...`. Call `feed_line` per line; the image ID comes from --iidfile.
    """

    def __init__(self, terminal: Terminal, *, tail: int = 8) -> None:
        super().__init__(terminal, tail=tail)
        self._vertices: dict[int, Step] = {}

    def feed_line(self, raw: str) -> None:
        line = ANSI_RE.sub("", raw).rstrip()
        if not line:
            return
        if match := BK_HEADER.match(line):
            vid = int(match[1])
            step = self._vertices.get(vid)
            if step is None:
                step = Step(vid, 0, match[3], stage=match[2])
                self._vertices[vid] = step
                self.result.steps.append(step)
            self.current = step
        elif match := BK_STATE.match(line):
            step = self._vertices.get(int(match[1]))
            state = match[2]
            if step is not None:
                if state == "CACHED":
                    step.cached = True
                if state.startswith("ERROR: "):
                    self.result.error = state.removeprefix("ERROR: ")
                    self.result.failed_step = step
                elif not step.done:
                    step.done = True
                    self.current = step
                    self._finish_step()
        elif match := BK_OUTPUT.match(line) or BK_OTHER.match(line):
            step = self._vertices.get(int(match[1]))
            if step is not None:
                self.current = step
                if self._hidden(step):
                    step.lines.append(match[2])
                else:
                    self._announce(step)
                    self._line(match[2])
        elif (match := BK_ERROR.match(line)) and self.result.error is None:
            self.result.error = match[1]
        if self._live is not None:
            self._live.update(self._render())

    @staticmethod
    def _hidden(step: Step) -> bool:
        """BuildKit's bookkeeping vertices ([internal] ..., exporting) are not user steps."""
        return (step.stage or "").startswith("internal") or BuildProgress._quiet(step)

    def _announce(self, step: Step) -> None:
        """Plain log: a step's line comes with its first output or its end, so steps that BuildKit
        resolves in parallel (cache hits) do not interleave with a running step's output."""
        if not self.terminal.interactive and not step.announced:
            step.announced = True
            self.terminal.info(f"[{step.name}] {step.label}")

    def _finish_step(self) -> None:
        step = self.current
        if step is None or self._hidden(step):
            return
        step.elapsed = time.monotonic() - step.started
        if not self.terminal.interactive and not step.announced:
            step.announced = True
            how = "cached" if step.cached else f"{step.elapsed:.1f}s"
            self.terminal.info(f"[{step.name}] {step.label}  ({how})")
        if self.terminal.interactive:
            from rich.markup import escape

            how = "[dim]cached[/dim]" if step.cached else f"[dim]{step.elapsed:.1f}s[/dim]"
            self.terminal.err.print(
                f"[green]✓[/green] {escape(step.name)} {escape(step.label)}  {how}"
            )

    def close(self) -> BuildResult:
        if self._live is not None:
            self._live.stop()
            self._live = None
        return self.result
