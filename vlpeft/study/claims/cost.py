"""Claim 9: the cost view of the paper's Fig. 5 — score against data size × fine-tunable parameters."""
from __future__ import annotations

from .estimators import cost_advantage, task_runs
from .families import both_tasks
from .parts import claim


@claim(9, "Per unit of cost (data size × fine-tunable parameters, Fig. 5) layer composition is the better choice.")
def layer_better_per_cost(d):
    """Per task and unit, least squares score ~ 1 + log2(cost) + [layer] over the plain PEFT runs (cost = n_train ×
    trainable parameters); the [layer] coefficient is the layer family's advantage at equal cost, judged gain with
    MIN_GAIN of the task; combined over tasks as claim 7."""
    per = {t: cost_advantage(task_runs(d, t)) for t in ("caption", "vqa")}
    return both_tasks(9, "layer advantage at equal log2 cost", per)
