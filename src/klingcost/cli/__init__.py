"""The ``klingcost`` command line. Only this package imports click.

Each concept's commands live in their own module. :data:`COMMANDS` names them, and a command's
module is imported only when that command runs (or its own ``--help`` is asked for), so
``klingcost estimate`` never loads the ledger or httpx and ``klingcost --help`` loads none of
them. To add a command, add one entry to :data:`COMMANDS`; ``tests/test_cli_lazy.py`` checks
that every entry loads and that its short help is the command's own.
"""

from __future__ import annotations

from importlib import import_module

import click

from klingcost.cli._common import EXIT_CODES_HELP, KlingcostGroup

# name -> ("module:attribute", short help shown by `klingcost --help`). The short help is the
# first sentence of the command's docstring, copied here so that listing the commands loads
# none of them; the test above fails when the two drift apart.
COMMANDS: dict[str, tuple[str, str]] = {
    "estimate": (
        "klingcost.cli.estimate_cmd:estimate_command",
        "Price the JSON body you would POST, before spending anything.",
    ),
    "prices": (
        "klingcost.cli.estimate_cmd:prices_command",
        "Print the price sheet: model x mode x duration -> units and cost.",
    ),
    "budget": (
        "klingcost.cli.budget_cmd:budget_group",
        "Set and show per-team budgets (limits per period, with parents).",
    ),
    "holds": (
        "klingcost.cli.holds_cmd:holds_group",
        "List holds: money reserved for jobs, until settled at the real charge or voided.",
    ),
    "ledger": ("klingcost.cli.ledger_cmd:ledger_group", "Audit the ledger file."),
    "pricing": (
        "klingcost.cli.pricing_cmd:pricing_group",
        "The price sheet a shared ledger's holds are priced by.",
    ),
    "submit": (
        "klingcost.cli.submit_cmd:submit_command",
        "Submit one job through the budget guard.",
    ),
    "sync": (
        "klingcost.cli.sync_cmd:sync_command",
        "Settle every open task from what the API reports.",
    ),
    "hooks": (
        "klingcost.cli.hooks_cmd:hooks_group",
        "Receive Kling's notify_hook callbacks and settle tasks as they end.",
    ),
    "report": (
        "klingcost.cli.report_cmd:report_command",
        "Spending per group: tasks, estimated, charged, still held, variance and the share of "
        "each team's budget used; with totals.",
    ),
    "reconcile": (
        "klingcost.cli.report_cmd:reconcile_command",
        "Estimated against charged units per job class (endpoint, model, mode, duration, sound, "
        "video reference, n): count, agreement rate, drift, largest variance, the tasks that "
        "disagree, and charges that look wrong: missing, zero, absurd, or a failed task charged.",
    ),
    "calibrate": (
        "klingcost.cli.calibrate_cmd:calibrate_command",
        "Learn the units Kling really charges per job class from settled tasks; fit the seed's "
        "multipliers (10 s, pro mode, model tier, sound, video reference) to them; propose a "
        "price-sheet overlay for what the sheet gets wrong.",
    ),
    "import-usage": (
        "klingcost.cli.calibrate_cmd:import_usage_command",
        'Load openai-hk\'s usage log (JSON, {"data": [...]} or JSON Lines; rows with fen, yufen, '
        "model, reqid) and learn the credits per unit the provider really charges.",
    ),
    "keys": (
        "klingcost.cli.keys_cmd:keys_group",
        "Make, list and revoke the keys of `klingcost proxy`, one team each.",
    ),
    "fake-server": (
        "klingcost.cli.api_cmd:fake_server_command",
        "Run a fake Kling API until interrupted.",
    ),
    "alerts": (
        "klingcost.cli.alerts_cmd:alerts_group",
        "Send budget alerts to a webhook, Slack, Feishu or DingTalk.",
    ),
    "events": (
        "klingcost.cli.alerts_cmd:events_command",
        "Show the ledger's event log (append-only): holds, settlements, alerts, refusals, "
        "budget changes, oldest first.",
    ),
    "proxy": (
        "klingcost.cli.proxy_cmd:proxy_command",
        "Serve a Kling-compatible API that prices, holds and settles every job per team.",
    ),
    "demo": (
        "klingcost.cli.demo_cmd:demo_command",
        "Run klingcost end to end against a built-in fake Kling API: no key, no network.",
    ),
    # --- ui ---
    "ui": (
        "klingcost.cli.ui_cmd:ui_command",
        "Serve the live budget page of a ledger at /ui until interrupted.",
    ),
}


def load_command(name: str) -> click.Command:
    """The command ``name`` from :data:`COMMANDS`, its module imported now."""
    module, _, attribute = COMMANDS[name][0].partition(":")
    command = getattr(import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{COMMANDS[name][0]} is not a click command")
    return command


class LazyGroup(KlingcostGroup):
    """The top-level group: commands from :data:`COMMANDS`, each imported when first needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The listing is built from the table's short help, through click's own shortening,
        # so it reads exactly as if every command were loaded, and none is.
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            if not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


@click.group(cls=LazyGroup, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="klingcost")
def main() -> None:
    """Estimate, budget, guard and reconcile the cost of Kling video and image generation.

    \b
    Environment:
      KLINGCOST_HOME             folder of the default ledger and hook secret (~/.klingcost)
      KLINGCOST_LEDGER           the ledger: a SQLite file or a postgresql:// URL (--ledger)
      KLINGCOST_API_KEY          the Kling (openai-hk) API key: submit, sync, hooks serve
      KLINGCOST_BASE_URL         the API's base URL (--base-url; https://api.openai-hk.com/kling)
      KLINGCOST_PRICING          price-sheet overlays, several joined by ':' (--pricing)
      KLINGCOST_HOOK_URL         notify_hook URL that submit sends (--hook-url)
      KLINGCOST_HOOK_SECRET      secret URL path of hooks serve (--secret)
      KLINGCOST_PROXY_SECRET     the proxy keys' server secret, shared by several hosts
                                 (else a 0600 file under KLINGCOST_HOME)
      KLINGCOST_PROXY_URL        the proxy's public URL, for callbacks (--public-url)
      KLINGCOST_PROXY_SETTINGS   set by `proxy --workers` for its workers (not by hand)
      KLINGCOST_FAKE_SECRET_KEY  secret key the fake-server's JWTs are signed with
      KLINGCOST_DEBUG            1: show the traceback of an unexpected error
      KLINGCOST_PAUSE_AT, KLINGCOST_PAUSE_FILE  crash tests only: pause at a named point
    """
