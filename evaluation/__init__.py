"""Evaluation stage: lm-eval suites, perplexities, the stability-gap monitor, plots."""
