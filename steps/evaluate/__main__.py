"""`python -m steps.evaluate`: the DVC runner's entry point."""

from steps.evaluate import main

main()
