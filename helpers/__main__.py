"""``python -m helpers STEP [SETTINGS.json] [--FIELD VALUE ...]``: see `helpers.cli`."""

from helpers.cli import main

main()
