"""Suites: named lists of lm-eval tasks plus how the paper averages them, shipped as YAML.

A suite's `groups` are macro averages over tasks (MMLU-Med-Avg = mean of 5 subsets); its `average`
is the macro average over tasks and groups (the paper's "Avg" column). Averages are computed per
metric; a task without acc_norm counts with its acc in the acc_norm average (boolq, copa, pubmedqa
report acc only), and a generative task with its exact_match in both. An average over a set with
missing members is marked incomplete, never silently shrunk.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import model_validator

from stablecpt.core.config import StrictModel, load_config
from stablecpt.core.errors import UserError

SUITES_DIR = Path(__file__).parent / "suites"
METRICS = ("acc", "acc_norm")


class Suite(StrictModel):
    name: str
    description: str = ""
    tasks: list[str]
    groups: dict[str, list[str]] = {}
    average: list[str] = []

    @model_validator(mode="after")
    def _members_known(self) -> Suite:
        known = set(self.tasks)
        for group, members in self.groups.items():
            unknown = [m for m in members if m not in known]
            if unknown:
                raise ValueError(f"group '{group}' names tasks not in the suite: {unknown}")
        unknown = [m for m in self.average if m not in known and m not in self.groups]
        if unknown:
            raise ValueError(f"average names members that are neither tasks nor groups: {unknown}")
        return self


def available_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UserError(f"unknown suite '{name_or_path}'; shipped: {', '.join(available_suites())} "
                            "(or give a path to a suite YAML)")
    return load_config(path, Suite)


def _metric(task_result: dict, metric: str) -> float | None:
    value = task_result.get(metric)
    if value is None and metric == "acc_norm":
        value = task_result.get("acc")
    if value is None:  # a generative (chat) multiple-choice task: exact match of its answer letter is its accuracy
        value = task_result.get("exact_match")
    return value


def macro_averages(suite: Suite, task_results: dict[str, dict]) -> dict[str, dict]:
    """{group or "average": {"acc": x, "acc_norm": y, "members": [...], "missing": [...], "complete": bool}}."""
    out: dict[str, dict] = {}
    values: dict[str, dict[str, float | None]] = {
        t: {m: _metric(r, m) for m in METRICS} for t, r in task_results.items()
    }

    def average(label: str, members: list[str]) -> None:
        present = [m for m in members if m in values and values[m]["acc"] is not None]
        entry: dict = {"members": members, "missing": [m for m in members if m not in present],
                       "complete": len(present) == len(members)}
        for metric in METRICS:
            vals = [values[m][metric] for m in present if values[m][metric] is not None]
            entry[metric] = sum(vals) / len(vals) if vals else None
        out[label] = entry
        if not entry["complete"] and present:
            values[label] = {m: entry[m] for m in METRICS}  # usable by the suite average, which is then incomplete

    for group, members in suite.groups.items():
        average(group, members)
        if out[group]["complete"]:
            values[group] = {m: out[group][m] for m in METRICS}
    if suite.average:
        average("average", suite.average)
        nested_missing = [g for g in suite.average if g in out and not out[g]["complete"]]
        if nested_missing:
            out["average"]["complete"] = False
            out["average"]["incomplete_groups"] = nested_missing
    return out


def lm_eval_groups(suite: Suite) -> dict[str, dict]:
    """The suite as lm-eval group configs {group name: config}: `<suite>` runs every task; each of its
    `groups` is `<suite>_<group>` and the `average` is `<suite>_average` (or `<suite>` itself when it
    averages exactly the suite's tasks), aggregated as unweighted means of acc and acc_norm.

    lm-eval (0.4.13) averages a group over its leaf tasks, and over those that report the metric: so the
    flat averages equal the suite's, while an average over groups (medical's mean of MMLU-Med, PubMedQA,
    MedMCQA, MedQA) becomes a mean over the leaf tasks, and acc_norm leaves out tasks that report only acc.
    """
    aggregate = [{"metric": m, "aggregation": "mean", "weight_by_size": False} for m in METRICS]
    groups = {f"{suite.name}_{g}": {"group": f"{suite.name}_{g}", "task": list(members),
                                    "aggregate_metric_list": aggregate, "metadata": {"version": 1.0}}
              for g, members in suite.groups.items()}

    def member(name: str) -> str:
        return f"{suite.name}_{name}" if name in suite.groups else name

    average = [member(m) for m in suite.average]
    covered = {t for m in suite.average for t in (suite.groups.get(m) or [m])}
    if suite.average and covered == set(suite.tasks):
        groups[suite.name] = {"group": suite.name, "task": average, "aggregate_metric_list": aggregate,
                              "metadata": {"version": 1.0}}
        return groups
    rest = [t for t in suite.tasks if t not in covered]
    if suite.average:
        groups[f"{suite.name}_average"] = {"group": f"{suite.name}_average", "task": average,
                                           "aggregate_metric_list": aggregate, "metadata": {"version": 1.0}}
        top = [f"{suite.name}_average", *rest]
    else:
        top = list(suite.tasks)
    groups[suite.name] = {"group": suite.name, "task": top, "metadata": {"version": 1.0}}
    return groups
