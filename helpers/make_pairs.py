"""Command line: `python -m helpers.make_pairs SETTINGS.json [--set key=value]` (see helpers.stages)."""

from helpers.stages import main

if __name__ == "__main__":
    main("pairs")
