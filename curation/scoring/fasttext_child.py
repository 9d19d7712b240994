"""Runs `fasttext.train_supervised` in a fresh process:
`python -m stablecpt.curation.scoring.fasttext_child PARAMS_JSON`.

fasttext-numpy2-wheel 0.9.2 leaves about 90% of the input matrix uninitialized when trained with one thread
(`DenseMatrix::uniform` fills one tenth per thread). In a long-lived process that memory holds whatever the
heap held before, so the same file and settings gave different models, and sometimes NaN, depending on what
ran earlier (reproduced by filling and freeing heap memory before training). A fresh process whose large
allocations come straight from the kernel (MALLOC_MMAP_THRESHOLD_, glibc) starts that memory at zero, which
is what upstream fastText's zero-initialized matrix gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stablecpt.core.errors import UserError

# allocations of 64 KiB and more are fresh zero pages from mmap, never recycled heap
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024), "OMP_NUM_THREADS": "1"}


def train_supervised_in_child(train_file: Path, model_file: Path, **params) -> None:
    request = json.dumps({"input": str(train_file), "output": str(model_file), "params": params})
    done = subprocess.run([sys.executable, "-m", __name__, request], env=os.environ | CHILD_ENV,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise UserError(f"{train_file}: fastText training failed: {last_line}")


def main(request_json: str) -> None:
    import fasttext

    request = json.loads(request_json)
    model = fasttext.train_supervised(input=request["input"], **request["params"])
    model.save_model(request["output"])


if __name__ == "__main__":
    main(sys.argv[1])
