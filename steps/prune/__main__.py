"""`python -m steps.prune`: the DVC runner's entry point."""

from steps.prune import main

main()
