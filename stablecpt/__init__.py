"""stablecpt: efficient continual pre-training that mitigates the stability gap (Guo et al., 2024).

The shared core: typed config loading, model naming, the command line. The stages live in the
top-level packages curation/, training/ and evaluation/; training never imports curation.
"""

__version__ = "0.1.0"
