"""Small corpora shaped like a new user's own (issue 16): rare-disease summaries as JSONL.gz (comma-separated
clinical lists and bulleted summaries), gene passages as a local Hugging Face `save_to_disk` dataset, and man
pages as Parquet. Generated from word lists with a fixed seed, so each run of the tests sees the same text.

With datatrove's default Gopher quality rules, the bulleted summaries fail `gopher_too_many_bullets` (every
line starts with "- "), the clinical lists and gene passages `gopher_below_alpha_threshold` (datatrove counts
the commas as words, so a comma-separated list is about half "words" without a letter), and the man pages pass.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

FEATURES = ("hypotonia", "seizures", "microcephaly", "scoliosis", "hepatomegaly", "splenomegaly", "cataracts",
            "nystagmus", "ataxia", "dysarthria", "hearing loss", "cardiomyopathy", "hypoglycemia", "lactic acidosis",
            "short stature", "macrocephaly", "craniosynostosis", "cleft palate", "polydactyly", "ptosis",
            "strabismus", "myopia", "retinopathy", "nephrocalcinosis", "proteinuria", "anemia",
            "thrombocytopenia", "neutropenia", "eczema", "alopecia", "hematuria", "hypertension", "fatigue",
            "muscle weakness", "developmental delay", "intellectual disability", "spasticity", "dystonia")
ORGANS = ("the kidneys", "the eyes", "the inner ear", "the liver", "the heart", "the brain", "the skin",
          "the muscles", "the bones", "the blood")
DISEASES = ("Alport syndrome", "Pompe disease", "Fabry disease", "Gaucher disease", "Rett syndrome",
            "Leigh syndrome", "Menkes disease", "Krabbe disease", "Niemann-Pick disease", "Wilson disease")
GENES = ("COL4A5", "GAA", "GLA", "GBA1", "MECP2", "SURF1", "ATP7A", "GALC", "NPC1", "ATP7B", "TP53", "BRCA1")
PATHWAYS = ("DNA repair", "lysosomal transport", "sphingolipid metabolism", "copper homeostasis",
            "collagen biosynthesis", "glycogen degradation", "mitochondrial respiration", "cell cycle control",
            "chromatin remodeling", "cholesterol trafficking", "apoptosis", "autophagy")
GO_TERMS = ("protein binding", "zinc ion binding", "DNA binding", "ATP binding", "metal ion transport",
            "lysosome", "mitochondrion", "extracellular matrix", "collagen trimer", "copper ion transport",
            "lipid metabolism", "hydrolase activity", "nucleus", "cytosol", "membrane")
MAN_WORDS = ("the command reads each file and writes the result to standard output with the options given "
             "below and when no file is named it reads from standard input so that it can be used in a "
             "pipeline of other commands").split()


def _clinical_list(rng: random.Random, name: str) -> str:
    features = rng.sample(FEATURES, 24)
    return (f"{name} is a rare inherited disorder that affects {rng.choice(ORGANS)} and {rng.choice(ORGANS)}. "
            f"The signs and symptoms vary between patients and include {', '.join(features[:12])}. "
            f"Less common findings are {', '.join(features[12:])}. "
            f"The onset is usually in childhood and the course is slowly progressive.")


BULLETS = ("{F} appears in early childhood in about {p} percent of cases.",
           "Most affected children develop {f} before school age.",
           "{F} may get worse during infections or long periods of fasting.",
           "Imaging often shows changes in {organ}.",
           "Treatment of {f} is supportive and follows local guidelines.",
           "Genetic testing confirms the diagnosis in nearly all families.",
           "Siblings of an affected child have a one in four chance of inheriting the condition.",
           "Regular review by a specialist for {organ} is recommended.",
           "{F} was described in the first published family.",
           "Life expectancy depends on the severity of {f}.")


def _bulleted(rng: random.Random, name: str) -> str:
    lines = []
    for template in rng.sample(BULLETS, len(BULLETS)):
        feature = rng.choice(FEATURES)
        lines.append("- " + template.format(F=feature.capitalize(), f=feature, p=rng.randint(5, 95),
                                            organ=rng.choice(ORGANS)))
    return "\n".join(lines)


def disease_records(n: int, seed: int = 0) -> list[dict]:
    """Half comma-separated clinical lists, half bulleted summaries."""
    rng = random.Random(seed)
    return [{"id": f"orpha-{i:04d}",
             "text": (_clinical_list if i % 2 == 0 else _bulleted)(rng, DISEASES[i % len(DISEASES)])}
            for i in range(n)]


def gene_records(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        gene = GENES[i % len(GENES)]
        aliases = ", ".join(f"{gene[:3]}{rng.randint(1, 99)}" for _ in range(8))
        diseases = ", ".join(rng.sample(DISEASES, 4))
        pathways = ", ".join(rng.sample(PATHWAYS, 5))
        terms = ", ".join(rng.sample(GO_TERMS, 8))
        text = (f"{gene} is a protein coding gene located on chromosome {rng.randint(1, 22)}. "
                f"Its aliases are {aliases}. Diseases associated with {gene} include {diseases}. "
                f"Among its related pathways are {pathways}. Gene Ontology annotations related to this gene "
                f"include {terms}. The gene has {rng.randint(3, 40)} exons and {rng.randint(1, 9)} transcripts.")
        records.append({"id": f"gene-{i:04d}", "text": text})
    return records


def man_records(n: int, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        paragraphs = [" ".join(rng.choice(MAN_WORDS) for _ in range(40)).capitalize() + "." for _ in range(3)]
        records.append({"id": f"man-{i:04d}", "text": f"NAME\n    tool{i} - a command\n\n" + "\n\n".join(paragraphs)})
    return records


def write_newuser_corpora(root: Path, n: int = 40) -> dict[str, str]:
    """The three sources on disk; returns their uris (diseases: a .jsonl.gz, genes: a save_to_disk folder,
    man: a .parquet)."""
    import datasets
    import polars as pl

    root.mkdir(parents=True, exist_ok=True)
    diseases = root / "diseases.jsonl.gz"
    with gzip.open(diseases, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in disease_records(n))
    genes = root / "genes"
    datasets.Dataset.from_list(gene_records(n)).save_to_disk(str(genes))
    man = root / "man.parquet"
    pl.DataFrame(man_records(n)).write_parquet(man)
    return {"diseases": str(diseases), "genes": f"hf:{genes}", "man": str(man)}


def newuser_config(root: Path, uris: dict[str, str], **overrides) -> dict:
    """A config as a new user writes it: their sources and every default filter."""
    data = {"output_dir": str(root / "run"),
            "sources": [{"name": "diseases", "uri": uris["diseases"], "domain": "medical", "category": "web"},
                        {"name": "genes", "uri": uris["genes"], "domain": "medical", "category": "web"},
                        {"name": "man", "uri": uris["man"], "domain": "general", "category": "web"}],
            "executor": {"tasks": 1, "workers": 1}}
    return data | overrides
