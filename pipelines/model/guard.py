"""The guard: the learned ranker is published only when it beats every simpler alternative on validation.

"A gain smaller than its standard error is not a gain": the ranker must beat the best alternative by more
than one standard error of their paired per-user difference; otherwise the alternative is chosen (the
one-standard-error rule: among models that validation cannot tell apart, keep the simpler one).
"""

from __future__ import annotations

import numpy as np

from ranker.evaluation.metrics import paired_difference


def choose(per_user: dict[str, np.ndarray], metric: str, challenger: str = "ranker") -> tuple[str, dict]:
    """``per_user``: model -> per-user metric on the same users. Returns the chosen model and the table."""
    table = {}
    for name, values in per_user.items():
        row = {metric: float(np.mean(values)), "ranker_minus": 0.0, "stderr": 0.0}
        if name != challenger:
            row["ranker_minus"], row["stderr"] = paired_difference(per_user[challenger], values)
        table[name] = row
    others = [name for name in per_user if name != challenger]
    if not others:
        return challenger, {"metric": metric, "table": table, "chosen": challenger}
    best = max(others, key=lambda name: (table[name][metric], name))
    margin, stderr = table[best]["ranker_minus"], table[best]["stderr"]
    chosen = challenger if margin > (stderr if np.isfinite(stderr) else 0.0) else best
    return chosen, {"metric": metric, "table": table, "chosen": chosen, "best_alternative": best,
                    "rule": "the ranker must beat the best alternative by more than one paired standard error"}
