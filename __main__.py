"""`python -m phasegate` is the `phasegate` command."""

from phasegate.cli.main import main

main()
