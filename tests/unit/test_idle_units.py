"""Units of the laptop side of the idle auto-stop: durations and the host's status file."""

from __future__ import annotations

import pytest

from dlenv.errors import UsageError
from dlenv.provision.idle import IdleStatus, keep_awake_command, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3h", 10800), ("90m", 5400), ("1h30m", 5400), ("2d", 172800), (" 7d ", 604800)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3", "3 hours", "0m", "8d", "-1h", "1h;rm -rf /", "h"])
def test_bad_durations_are_one_line(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_duration(text)
    assert "\n" not in err.value.message


def test_only_an_integer_reaches_the_remote_command() -> None:
    cmd = keep_awake_command(5400)
    assert "+ 5400 ))" in cmd and "$HOME/.config/dlenv/keep-awake" in cmd
    with pytest.raises((TypeError, ValueError)):
        keep_awake_command("1; reboot")  # type: ignore[arg-type]


def test_status_file_is_read_defensively() -> None:
    ok = IdleStatus.parse('{"checked": 1000, "busy": "", "stops_in": 600}')
    assert ok is not None and ok.describe(now=1060) == "idle: stops in about 9 min"
    busy = IdleStatus.parse('{"checked": 1000, "busy": "ssh terminal (a@pts/0)", "stops_in": 3600}')
    assert busy is not None and busy.describe(now=1000) == "in use (ssh terminal (a@pts/0))"
    for bad in (
        "",
        "[]",
        "{}",
        '{"checked": "x", "stops_in": 1}',
        '{"checked": 1, "stops_in": 1, "busy": "\\u001b[2J"}',
    ):
        assert IdleStatus.parse(bad) is None
