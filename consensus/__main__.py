"""`python -m consensus ...` is the `consensus-lab` command."""

from consensus.cli import main

main()
