"""stablecpt: efficient continual pre-training that mitigates the stability gap (Guo et al., 2024).

One namespace: stablecpt.core (the bottom layer), stablecpt.corpora (embedded sources), the stages
stablecpt.curation, .training, .evaluation and .audit (folders at the project's top, mapped here by setup.py),
and the command line (stablecpt.cli) and demo on top. training never imports curation.
"""

__version__ = "0.1.0"
