"""The one-GPU stability-gap study (issue 18 part 2): prepared here, run on one H200, analysed here.

docs/study-gpu.md says how to run it. Nothing here imports more than the standard library at import time:
`python -m experiments.study_gpu run` must start on an image without pydantic.
"""
