"""KenLM's own estimator, lmplz, as an opt-in trainer for reference corpora too big for kaldingram's memory.

No wheel ships lmplz; `make lmplz` builds it from the `kenlm` 0.3.0 sdist on PyPI (needs Debian's Boost dev
packages; see docs/scoring.md). lmplz refuses `<unk>` in its input, so its corpus marks rare words with
RARE_TOKEN instead, a token normalisation can never produce (it removes < and >); the scorer maps every OOV word
to it before asking KenLM, which gives the same "<unk> class split evenly" semantics as the kaldingram route.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stablecpt.core.errors import UserError

RARE_TOKEN = "<rare>"
DEFAULT_BUILD = Path("build/lmplz/bin/lmplz")  # where `make lmplz` puts it, relative to the project root


def find_lmplz(configured: str | None) -> Path:
    candidates = [Path(configured)] if configured else [Path(p) for p in (shutil.which("lmplz"),) if p]
    candidates += [] if configured else [DEFAULT_BUILD]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = configured or f"PATH or {DEFAULT_BUILD}"
    raise UserError(f"lmplz not found ({where}): build it with `make lmplz`, or set lmplz_path, or use "
                    "trainer: kaldingram")


def estimate_arpa_lmplz(corpus: Path, arpa: Path, order: int, lmplz: Path, memory: str) -> None:
    cmd = [str(lmplz), "-o", str(order), "--text", str(corpus), "--arpa", str(arpa), "-S", memory,
           "-T", str(arpa.parent), "--discount_fallback"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{lmplz}: exited with status {done.returncode} on {corpus}: {last}")
