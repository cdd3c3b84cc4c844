"""The object every command receives: global flags, settings resolution and the Terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.config import Settings


@dataclass
class App:
    """What `dlenv` (the group) hands every command.

    `global_flags` are the group's own options (`dlenv --region X CMD`); a command's options of
    the same name (`dlenv CMD --region X`) win when given, and are ignored when left unset.
    """

    global_flags: dict[str, Any]
    debug: bool = False
    terminal: Terminal = field(init=False)
    _shown: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.terminal = Terminal(debug=self.debug)

    def settings(self, **flags: Any) -> Settings:
        """Settings with this command's explicit flags on top of every other layer.

        An option the user did not give is None and must not hide the global flag of the same
        name: `dlenv --region eu-west-1 down r1` once acted in the default region because the
        command's unset `--region` (None) replaced the group's value in a plain dict merge.
        """
        from dlenv import config

        merged = {k: v for k, v in self.global_flags.items() if v is not None}
        merged.update({k: v for k, v in flags.items() if v is not None})
        settings = config.load(merged)
        for notice in settings.notices:  # once per process, however often settings are built
            if notice not in self._shown:
                self._shown.add(notice)
                self.terminal.info(notice)
        return settings
