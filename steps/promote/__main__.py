"""`python -m steps.promote`: the DVC runner's entry point."""

from steps.promote import main

main()
