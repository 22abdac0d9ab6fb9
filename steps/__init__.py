"""shrinkflow's steps: the pipeline stages at this level, the libraries and doors they use below it.

A regular package, not a namespace one: another `steps` package on sys.path cannot shadow it.
ARCHITECTURE.md says which package may import which.
"""
