"""Reading a sheet file: its YAML, read strictly, or an error naming the file and the problem."""

from pathlib import Path
from typing import Any

from klingcost.errors import PricingSheetError


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PricingSheetError(
            source=str(path), problems=["file not found"], unreadable=True
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PricingSheetError(
            source=str(path), problems=[f"cannot read: {exc}"], unreadable=True
        ) from None
    return _parse_yaml(text, str(path))


def _parse_yaml(text: str, origin: str, *, trusted: bool = False) -> dict[str, Any]:
    import yaml  # loaded only when a sheet is read, to keep `import klingcost` light

    # The bundled sheet is ours, so libyaml parses it (~10x faster: it was half the start of
    # `klingcost estimate`); a user's file keeps the pure-Python parser, whose recursion
    # limit turns a hostile nesting into an error where libyaml's C stack could overflow.
    # (Either loader reads the bundled sheet to the same data: only the speed differs.)
    fast = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # pragma: no mutate (see above)
    loader = fast if trusted else yaml.SafeLoader
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise PricingSheetError(source=origin, problems=[f"not valid YAML: {exc}"]) from None
    except RecursionError:  # PyYAML composes and constructs nested nodes recursively
        raise PricingSheetError(source=origin, problems=["(top): nested too deeply"]) from None
    except ValueError as exc:  # an integer past 4,300 digits, a date like 2026-13-45
        problem = "an integer of over 4,300 digits" if "digits" in str(exc) else str(exc)
        raise PricingSheetError(source=origin, problems=[f"not valid YAML: {problem}"]) from None
    if not isinstance(data, dict):
        raise PricingSheetError(source=origin, problems=["(top): the sheet must be a mapping"])
    return data
