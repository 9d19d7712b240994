"""Scorer training and curation agree on the held-out split: another rule is an error naming both, a larger
held-out share in curation than the scorer skipped is a one-line warning naming both keys."""

import pytest
from scoring_corpora import MEDICAL, texts
from stablecpt.curation.config import CurateConfig
from stablecpt.curation.scoring import train_kenlm
from stablecpt.curation.scoring.config import ScorerSpec
from stablecpt.curation.scoring.split import HELDOUT_RULE
from stablecpt.curation.wiring import heldout_agreement

from stablecpt.core.errors import UserError


def _curation(tmp_path, fraction: float) -> CurateConfig:
    return CurateConfig.model_validate({
        "output_dir": str(tmp_path / "run"), "sources": [{"name": "hpo", "uri": "embedded:hpo"}],
        "heldout": {"fraction_by_domain": {"medical": fraction}}})


def test_heldout_rule_and_share_are_checked_against_the_scorer(tmp_path):
    def scorer(rule: str, percent: float, name: str):
        train_kenlm(texts(MEDICAL, heldout=False)[:40], tmp_path / name, order=2,
                    training_extra={"heldout_rule": rule, "heldout_percent": percent})
        return ScorerSpec(model_dir=str(tmp_path / name)).build("kenlm")

    agreeing = scorer(HELDOUT_RULE, 10, "a")
    assert heldout_agreement(_curation(tmp_path, 0.05), "kenlm", agreeing) == []
    assert heldout_agreement(_curation(tmp_path, 0.2), "kenlm", agreeing) == [
        f"heldout.fraction_by_domain.medical holds out 20% but scorer 'kenlm' skipped only 10% in training "
        f"({tmp_path / 'a'}/scorer.json training.heldout_percent): held-out documents above 10% were trained on"]
    old = scorer("int.from_bytes(sha1(id)[:8], 'big') % 100 < heldout_percent", 10, "b")
    with pytest.raises(UserError, match=r"scoring.scorers.kenlm: .*b/scorer.json key 'training.heldout_rule' is "
                                        r"'int.from_bytes\(sha1\(id\)\[:8\].*but this curation holds out by"):
        heldout_agreement(_curation(tmp_path, 0.05), "kenlm", old)
    assert heldout_agreement(_curation(tmp_path, 0.0), "kenlm", old) == []  # nothing held out: nothing to agree on
