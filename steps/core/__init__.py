"""What every stage and door shares: paths, names, the stage list, hashes, files, datasets, reports."""
