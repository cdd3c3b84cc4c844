"""`dlenv budget`: a dollar limit an environment enforces on itself (it stops at the limit).

Only click is imported at module level (`dlenv --help` imports every command module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from dlenv.cli.options import aws_options

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command("budget")
@click.argument("name")
@click.argument("usd", required=False)
@click.option("--off", is_flag=True, help="Remove the budget (the idle auto-stop stays).")
@aws_options
@click.pass_obj
def budget(
    app: App,
    /,
    name: str,
    usd: str | None,
    off: bool,
    region: str | None = None,
    profile: str | None = None,
) -> None:
    """Set, show or remove NAME's budget in US dollars.

    \b
    The machine itself counts its running time since the budget was set, at the instance
    type's hourly price (spot: the on-demand price, the most a spot hour costs), warns all
    logged-in users at 80 % and stops itself at 100 % (the pre-stop hook runs first), so the
    limit holds while your laptop is closed. Stopped time is not counted.
      dlenv budget mybox 50        stop mybox once it has cost $50 from now
      dlenv budget mybox           what it has spent, and its idle countdown
      dlenv budget mybox --off     no budget
    """
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings
    from dlenv.errors import DlenvError, UsageError
    from dlenv.ops.lifecycle import target_of_running
    from dlenv.provision import idle

    if usd and off:
        raise UsageError("give an amount or --off, not both")
    amount = idle.parse_budget(usd) if usd else None
    settings = app.settings(region=region, profile=profile)
    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state != "running":
        raise UsageError(
            f"{name} is {env.state}: the budget lives on the machine",
            f"start it (`dlenv start {name}`), then run this again",
        )
    target = target_of_running(name, settings, app.terminal)
    if amount is None and not off:
        state = idle.read_status(target)
        if state is None:
            raise DlenvError(
                f"{name} has no idle status yet (its timer runs every minute)",
                f"provision it if this persists: `dlenv provision {name} --only idle-autostop`",
            )
        budget_tag = env.tags.get(idle.BUDGET_TAG, "none")
        app.terminal.info(f"{name}: {state.describe()} (budget tag: {budget_tag})")
        return
    price = idle.set_budget(aws, env, target, None if off else amount)
    if off:
        app.terminal.success(f"{name}: budget removed")
        return
    assert amount is not None  # neither --off nor a read: an amount was given
    hours = amount / price if price else float("inf")
    app.terminal.success(
        f"{name}: budget ${amount:.2f} from now, at {price:.3f} $/h: it stops itself after "
        f"about {hours:.1f} running hours (warning at 80 %)"
    )
