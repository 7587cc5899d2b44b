"""``python -m klingcost``: the same command line as ``klingcost``."""

from klingcost.cli import main

if __name__ == "__main__":
    main(prog_name="klingcost")
