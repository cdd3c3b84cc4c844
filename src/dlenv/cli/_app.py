"""The object every command receives: global flags, settings resolution and the Terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.config import Settings


@dataclass
class App:
    global_flags: dict[str, Any]
    debug: bool = False
    terminal: Terminal = field(init=False)

    def __post_init__(self) -> None:
        self.terminal = Terminal(debug=self.debug)

    def settings(self, **flags: Any) -> Settings:
        """Settings with this command's explicit flags on top of every other layer."""
        from dlenv import config

        return config.load({**self.global_flags, **flags})
