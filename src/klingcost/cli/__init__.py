"""The ``klingcost`` command line. Only this package imports click.

Each concept's commands live in their own module and are registered on :data:`main` here.
"""

from __future__ import annotations

import click

from klingcost.cli._common import EXIT_CODES_HELP, KlingcostGroup


@click.group(cls=KlingcostGroup, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="klingcost")
def main() -> None:
    """Estimate, budget, guard and reconcile the cost of Kling video and image generation.

    Environment: KLINGCOST_HOME (default ~/.klingcost), KLINGCOST_LEDGER, KLINGCOST_API_KEY,
    KLINGCOST_BASE_URL, KLINGCOST_PRICING.
    """


def _register() -> None:
    # Each module imports only click and klingcost's light core at import time; the ledger,
    # the client and the servers load inside the commands that use them.
    from klingcost.cli import (
        api_cmd,
        demo_cmd,
        estimate_cmd,
        guard_cmd,
        ledger_cmd,
        pricing_cmd,
        report_cmd,
    )

    for module in (estimate_cmd, ledger_cmd, pricing_cmd, guard_cmd, report_cmd, api_cmd, demo_cmd):
        module.register(main)


_register()
