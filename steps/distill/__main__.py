"""`python -m steps.distill`: the DVC runner's entry point."""

from steps.distill import main

main()
