"""Knowledge distillation as a weighted sum of named terms (torchdistill's `WeightedSumLoss`).

    loss = sum_k  w_k * sum_{(i, j) in P_k}  term_k(student activation i, teacher activation j)

One module per term, each a small `term.Term` (an `nn.Module`) with its formula and paper, registered
by name in `steps.compression.choices.DISTILL_TERMS`; `objective.build` resolves the names and returns
the `objective.WeightedSum`. What a term reads (`Term.reads`):

    "logits"          forward(student logits, teacher logits)     soft_targets
    "labels"          forward(student logits, labels)             hard_labels
    "layers"          forward(student feature, teacher feature)   hints, attention_transfer: the
                      for each (student, teacher) module pair named in params
    "attention_maps"  as "layers", on the module pairs the model families name per transformer block
    "hidden_states"   (families.Family hooks of those names), paired by a layer map (`layer_maps`)

Features are captured by `features.FeatureTap`. A new term is one module here and one registry line.
Nothing is imported here, so a stage that uses one term does not run the others.
"""
