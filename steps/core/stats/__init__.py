"""Statistics for decisions that survive noise; pure numpy/scipy, one module per question.

- paired.py: is the challenger better than the champion on the same test items (McNemar, paired bootstrap)?
- classes.py: does some class's recall drop, beyond noise (per-class intervals, paired or from recalls alone)?
- likelihood.py: does a language model's per-token log-likelihood drop, beyond noise (documents resampled, paired)?
- quantiles.py: what is the p95 latency, with a distribution-free confidence interval?
Accuracies and differences are fractions (0.0123); reasons print percentage points (+1.23 pt).
"""
