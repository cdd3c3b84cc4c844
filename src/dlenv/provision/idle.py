"""The host side of the idle auto-stop, as the laptop sees it: keep-awake and the idle status.

The idle check (provision/files/idle-check.j2, run by a systemd timer on the host) reads the
login user's `~/.config/dlenv/keep-awake`: a deadline in epoch seconds keeps the machine up until
then, and a touch keeps it up for one more idle window. It writes what it decided to
/run/dlenv/idle-status.json. `dlenv keep-awake` writes the deadline over the verified SSH path;
the deadline is computed with the host's clock, so a laptop's skewed clock cannot shorten it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlenv.errors import UsageError

if TYPE_CHECKING:
    from dlenv.cloud.session import Aws
    from dlenv.ssh.target import SshTarget

KEEP_AWAKE_FILE = ".config/dlenv/keep-awake"
"""Relative to the login user's home on the host (the idle check reads it as root)."""
STATUS_FILE = "/run/dlenv/idle-status.json"
MAX_SECONDS = 7 * 24 * 3600
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def parse_duration(text: str) -> int:
    """'3h', '90m', '1h30m', '2d' -> seconds; one clear line for anything else."""
    value = text.strip().lower()
    match = _DURATION.fullmatch(value)
    if not value or not match or not any(match.groups()):
        raise UsageError(
            f"{text!r} is not a duration",
            "give hours and/or minutes, e.g. 3h, 90m or 1h30m (at most 7d)",
        )
    days, hours, minutes = (int(g or 0) for g in match.groups())
    seconds = ((days * 24 + hours) * 60 + minutes) * 60
    if seconds <= 0 or seconds > MAX_SECONDS:
        raise UsageError(
            f"keep-awake {text}: must be more than 0 and at most 7 days",
            "a longer stay-up is --idle-stop 0 (`dlenv provision NAME --idle-stop 0`)",
        )
    return seconds


def keep_awake_command(seconds: int) -> str:
    """Remote shell that writes now+seconds (host clock) atomically and prints the deadline.

    Only an int is interpolated (`int()` by construction); the path is dlenv's constant.
    """
    seconds = int(seconds)
    path = f'"$HOME/{KEEP_AWAKE_FILE}"'
    return (
        f'd=$(( $(date +%s) + {seconds} )) && mkdir -p "$HOME/.config/dlenv" && '
        f'echo "$d" > {path}.tmp && mv -f {path}.tmp {path} && echo "$d"'
    )


def clear_command() -> str:
    return f'rm -f "$HOME/{KEEP_AWAKE_FILE}" && echo cleared'


@dataclass(frozen=True)
class IdleStatus:
    """What the host's idle check last decided (/run/dlenv/idle-status.json)."""

    busy: str
    stops_in: int | None
    """Seconds until the idle stop at the last check; None: idle auto-stop is off."""
    checked: int
    spent_usd: float | None = None
    budget_usd: float | None = None

    @classmethod
    def parse(cls, text: str) -> IdleStatus | None:
        """The host's status file, read defensively (it is remote output: untrusted)."""
        try:
            data = json.loads(text)
            busy = data.get("busy", "")
            raw_left = data["stops_in"]
            stops_in = None if raw_left is None else max(0, int(raw_left))
            checked = int(data["checked"])
            spent = data.get("spent_usd")
            budget = data.get("budget_usd")
            spent = None if spent is None else float(spent)
            budget = None if budget is None else float(budget)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if not isinstance(busy, str) or len(busy) > 200 or not busy.isprintable():
            return None
        return cls(busy, stops_in, checked, spent, budget)

    def describe(self, now: float | None = None) -> str:
        """One line: 'in use (ssh terminal)', 'idle: stops in about 12 min', plus the spend."""
        age = max(0, int((now or time.time()) - self.checked))
        if self.busy:
            text = f"in use ({self.busy})"
        elif self.stops_in is None:
            text = "idle auto-stop off"
        else:
            left = max(0, self.stops_in - age)
            text = f"idle: stops in about {max(1, (left + 59) // 60)} min" if left else "stopping"
        if self.budget_usd is not None and self.spent_usd is not None:
            share = 100 * self.spent_usd / self.budget_usd if self.budget_usd else 100
            text += f"; budget ${self.spent_usd:.2f} of ${self.budget_usd:.2f} ({share:.0f}%)"
        return text


def format_deadline(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


# -- the budget: enforced by the same timer, on the machine ------------------------------------
BUDGET_FILE = "/etc/dlenv/budget.conf"
BUDGET_TAG = "dlenv:budget"
MAX_BUDGET = 100_000.0


def parse_budget(text: str | float) -> float:
    """'50', '12.5', '$80' -> USD; one line for anything else."""
    raw = str(text).strip().removeprefix("$")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 < value <= MAX_BUDGET) or not re.fullmatch(r"\d+(\.\d{1,2})?", raw):
        raise UsageError(
            f"budget {text!r} is not an amount of US dollars",
            "give a positive number such as 50 or 12.50 (at most 100000)",
        )
    return value


def budget_command(budget: float, price_per_hour: float) -> str:
    """Root shell that writes /etc/dlenv/budget.conf atomically (SET_AT from the host's clock).

    Only floats are interpolated (`float()` by construction); a new SET_AT starts the count of
    running time afresh, so the budget counts from when it was set.
    """
    budget, price = float(budget), float(price_per_hour)
    body = f"BUDGET_USD={budget:.2f}\\nPRICE_PER_HOUR={price:.4f}\\nSET_AT=%s\\n"
    return (
        "set -e; mkdir -p /etc/dlenv /var/lib/dlenv; now=$(date +%s); "
        f"printf '{body}' \"$now\" > {BUDGET_FILE}.tmp && chmod 644 {BUDGET_FILE}.tmp && "
        f'mv -f {BUDGET_FILE}.tmp {BUDGET_FILE} && echo "$now"'
    )


def clear_budget_command() -> str:
    return f"rm -f {BUDGET_FILE} && echo cleared"


def status_command() -> str:
    return f"cat {STATUS_FILE} 2>/dev/null || true"


def apply_budget(target: SshTarget, amount: float | None, price_per_hour: float) -> None:
    """Write (or with None remove) the budget on the host over the verified SSH path, as root.

    Raises DlenvError with the host's last line when the write fails (no passwordless sudo).
    """
    from dlenv.errors import DlenvError
    from dlenv.ssh.host import sudo_wrap
    from dlenv.ssh.session import SshHost

    command = clear_budget_command() if amount is None else budget_command(amount, price_per_hour)
    with SshHost(target) as host:
        res = host.run(sudo_wrap(command))
    if res.exit_code != 0:
        last = (res.output.strip().splitlines() or [""])[-1]
        label = target.label
        raise DlenvError(
            f"could not write the budget on {label}: {last}",
            "the login user needs passwordless sudo (EC2 images have it)",
            host=label,
        )


def set_budget(aws: Aws, env: Any, target: SshTarget, amount: float | None) -> float:
    """Write NAME's budget on the machine and in its `dlenv:budget` tag (None: remove both).

    Returns the hourly price the machine counts with (the catalog's on-demand price: for spot,
    the most an hour can cost). The machine is written first: a tag without a machine that
    enforces it would be a promise nobody keeps.
    """
    from dlenv.cloud import catalog, instances

    price = catalog.lookup(env.instance_type, aws.region_name).price_per_hour
    apply_budget(target, amount, price)
    if amount is None:
        instances.untag(aws, [env.instance_id], [BUDGET_TAG])
    else:
        instances.tag(aws, [env.instance_id], {BUDGET_TAG: f"{amount:.2f}"})
    return price


def read_status(target: SshTarget, connect_timeout: float = 15) -> IdleStatus | None:
    """The host's last idle decision (None: the timer has not run yet, or no idle check)."""
    from dlenv.ssh.session import SshHost

    with SshHost(target, connect_timeout=connect_timeout) as host:
        res = host.run(status_command(), timeout=30)
    return IdleStatus.parse(res.output.strip())
