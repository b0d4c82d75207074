"""`python -m connector` is the same as the `cpq2stripe` command."""

from connector.cli import main

main()
