"""The contract between the stages: what each one writes and the next one reads, in one place.

order: which packed sequence a run reads at each position of an epoch (the loader and the audit share it).
"""
