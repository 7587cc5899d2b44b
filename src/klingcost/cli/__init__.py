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
    # Imported here so that each command module can import ``main``'s helpers freely.
    from klingcost.cli import estimate_cmd

    estimate_cmd.register(main)
    try:
        from klingcost.cli import ledger_cmd
    except ImportError:  # pragma: no cover - during bootstrap
        pass
    else:
        ledger_cmd.register(main)
    try:
        from klingcost.cli import api_cmd
    except ImportError:  # pragma: no cover - during bootstrap
        pass
    else:
        api_cmd.register(main)


_register()
