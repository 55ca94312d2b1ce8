"""Command line: `python -m helpers.dpo SETTINGS.json [--set key=value]` (see helpers.stages)."""

from helpers.stages import main

if __name__ == "__main__":
    main("dpo")
