"""The demo trains its scorers on a hash-split reference part and ranks only the other part: the shipped configs
say so, the demo refuses configs that do not, and `score_reference: false` leaves the documents a scorer was
trained on unscored (selection then ranks only unseen ones)."""

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from stablecpt.curation.attributes import IN_REFERENCE, AttributeWriter
from stablecpt.curation.scoring.config import ScorerSpec, TrainScorersConfig
from stablecpt.curation.scoring.split import heldout_bucket
from stablecpt.curation.scoring.train import train_scorer

from stablecpt.core.config import load_config
from stablecpt.core.errors import UserError
from stablecpt.demo import DemoConfig, plan_steps

WORDS = "fever cough rash pain nausea seizure anemia tumour infection lesion kidney liver".split()


def test_demo_configs_split_the_reference_from_the_ranked_pool(tmp_path):
    cfg = load_config("configs/demo/demo.yaml", DemoConfig)
    plan_steps(cfg)
    scorers = tmp_path / "scorers.yaml"
    scorers.write_text(cfg.scorers.read_text().replace("reference_percent: 45\n", ""))
    with pytest.raises(UserError, match="key 'reference_percent' is not set"):
        plan_steps(cfg.model_copy(update={"scorers": scorers}))
    curate = tmp_path / "curate.yaml"
    curate.write_text(cfg.curate.read_text().replace("score_reference: false", "score_reference: true"))
    with pytest.raises(UserError, match="scoring.scorers.kenlm.score_reference' is true"):
        plan_steps(cfg.model_copy(update={"curate": curate}))


def test_unscored_reference_leaves_trained_on_documents_without_a_score(tmp_path):
    docs = [{"id": f"d{i:03d}", "text": " ".join(WORDS[(i + k) % len(WORDS)] for k in range(4 + i % 9))}
            for i in range(200)]
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id": "{d["id"]}", "text": "{d["text"]}"}}\n' for d in docs))
    train = TrainScorersConfig.model_validate({
        "heldout_percent": 10, "reference_percent": 45,
        "reference": [{"name": "ref", "uri": str(tmp_path / "in.jsonl"), "domain": "medical", "category": "web"}],
        "scorers": [{"kind": "kenlm", "output_dir": str(tmp_path / "kenlm"), "order": 2}]})
    info = train_scorer(train, train.scorers[0])
    trained = {d["id"] for d in docs if 10 <= heldout_bucket(d["id"]) < 55}
    assert info.record.reference.documents == len(trained)
    for score_reference in (True, False):
        block = ScorerSpec(model_dir=str(tmp_path / "kenlm"), score_reference=score_reference).build("kenlm")
        folder = tmp_path / f"attrs-{score_reference}"
        writer = AttributeWriter("kenlm", block, str(folder))
        pool = [Document(text=d["text"], id=f"notes/{d['id']}", metadata={}) for d in docs]
        list(writer.run(block.run(iter(pool))))
        table = pq.read_table(folder / "00000.parquet").to_pylist()
        assert {r["id"].split("/")[1] for r in table if r[IN_REFERENCE]} == trained  # source name does not matter
        unscored = {r["id"].split("/")[1] for r in table if r["kenlm_perplexity"] is None}
        assert unscored == (set() if score_reference else trained)
