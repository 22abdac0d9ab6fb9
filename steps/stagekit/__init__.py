"""What the stages share that talks to the doors (tracking): one layer below the stages, beside the registry
rules. `finish`: the end every model-training stage shares."""
