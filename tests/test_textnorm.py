"""curation/textnorm.py `simplify` gives datatrove's `simplify_text` string for every text and config."""

import random
from dataclasses import fields

import pytest
from curation_helpers import embedded_slice
from datatrove.utils.text import TextNormConfig, simplify_text
from stablecpt.curation.textnorm import simplify

# accented and combining letters, CJK and full-width punctuation, odd whitespace, digits of other scripts
PIECES = ["café", "naïve", "e\u0301", "\u0301", "Ωμέγα", "日本語、テキスト。", "（全角）", "\u00a0", "\u2003", "\u3000",
          "\x1c", "\u2028", "\t\n", "  ", "٣٤٥", "12,5", "3.14", "Monday", "MARCH", "—", "«»", "x_y", "a-b", "ﬁ",
          "Ǆ", "İ", "ß", "\u200b", "\ufeff", "🙂", "word", ".", ",", "'", "\u0951", "\u05b0"]


def _generated(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) + rng.choice(["", " ", "\n"]) for _ in range(rng.randrange(1, 30)))
            for _ in range(count)]


def _configs() -> list[TextNormConfig]:
    names = [f.name for f in fields(TextNormConfig)]
    configs = [TextNormConfig(), TextNormConfig(norm_numbers=False), TextNormConfig(**dict.fromkeys(names, True)),
               TextNormConfig(**dict.fromkeys(names, False))]
    configs += [TextNormConfig(**{n: n != off for n in names}) for off in names]
    return configs


@pytest.mark.parametrize("config", _configs(), ids=str)
def test_same_string_as_datatrove(config):
    docs = embedded_slice("wiki", 3) + embedded_slice("hpo", 40) + embedded_slice("pystdlib", 2)
    texts = [d["text"] for d in docs] + _generated(400, 1)
    assert any(not t.isascii() for t in texts[:3])  # real non-ASCII text
    for text in texts:
        assert simplify(text, config) == simplify_text(text, config), text[:80]
