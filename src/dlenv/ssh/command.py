"""The one way a remote shell command is built: from argv lists, every word shell-quoted.

Anything that reaches a remote shell (file names of wheels and installers, paths, user names)
goes through `join`, so a hostile file name like `x';reboot;'.whl` is one inert word. File
contents never travel inside a command: they are uploaded as files (`Host.put`).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from os import PathLike

Word = str | int | PathLike[str]


def quote(word: Word) -> str:
    """One shell word; NUL (which no shell word can hold) is refused."""
    text = str(word) if not isinstance(word, PathLike) else word.__fspath__()
    if "\0" in text:
        raise ValueError("a shell word cannot contain NUL")
    return shlex.quote(text)


def join(argv: Iterable[Word]) -> str:
    """`argv` as one shell command line (each word quoted)."""
    return " ".join(quote(w) for w in argv)


def chain(*commands: Iterable[Word], op: str = "&&") -> str:
    """Several argv lists joined by `&&` (or `op`: `||`, `;`)."""
    if op not in {"&&", "||", ";"}:
        raise ValueError(f"unsupported operator {op!r}")
    return f" {op} ".join(join(c) for c in commands)
