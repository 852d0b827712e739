"""`python -m phasegate` is the `phasegate` command."""

from phasegate.session.cli import main

main()
