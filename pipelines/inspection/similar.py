"""`python -m pipelines similar --item I`: an item's nearest items in the run's FAISS index over the fused
vectors, with each modality's own cosine between the query and the neighbour, so one sees which modalities
agree that the two are alike (the saved blocks are the normalised per-modality vectors the fusion read)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.inspection.open_run import OpenedRun, position

AGREE_COSINE = 0.5  # a modality "agrees" when its own cosine reaches this


@dataclass
class Neighbour:
    rank: int
    item_idx: int
    score: float  # the fused-space similarity FAISS returned
    cosines: dict[str, float | None]  # modality -> cosine; None when the query or the neighbour lacks it


def neighbours(opened: OpenedRun, item: int, k: int) -> list[Neighbour]:
    aligned = opened.rec.model.space.aligned
    idx, scores = opened.rec.similar_positions(np.array([item], dtype=np.int64), k)
    out = []
    for rank, (other, score) in enumerate(zip(idx[0].tolist(), scores[0].tolist(), strict=True), start=1):
        if other < 0:
            break
        cosines = {}
        for j, modality in enumerate(aligned.modalities):
            both = aligned.mask[item, j] and aligned.mask[other, j]
            block = aligned.blocks[modality]
            cosines[modality] = float(block[item] @ block[other]) if both else None
        out.append(Neighbour(rank, other, float(score), cosines))
    return out


def _agreement(cosines: dict[str, float | None]) -> str:
    present = sorted(((c, m) for m, c in cosines.items() if c is not None), reverse=True)
    values = ", ".join(f"{m} {c:.2f}" for c, m in present)
    missing = [m for m, c in cosines.items() if c is None]
    agree = [m for c, m in present if c >= AGREE_COSINE]
    text = f"{values}{'; not both: ' + ', '.join(missing) if missing else ''}"
    return f"agree: {', '.join(agree) or 'none'} (cosine >= {AGREE_COSINE}); {text}"


def format_similar(opened: OpenedRun, item_id: str, k: int) -> str:
    item = position(opened.rec.item_ids, item_id, "item", opened.path, "index_items.parquet")
    aligned = opened.rec.model.space.aligned
    has = [m for j, m in enumerate(aligned.modalities) if aligned.mask[item, j]]
    lines = [f"run {opened.path.name}, item {item_id}  {opened.title(item_id)}",
             f"modalities of {item_id}: {', '.join(has) or 'none'}; the {k} nearest items in the fused space "
             f"({opened.rec.index.kind} FAISS index)"]
    found = neighbours(opened, item, k)
    if not found:
        lines.append(f"no neighbours: {item_id} has no vector in this run" if not has else "no neighbours")
    else:
        lines.append("rank  item          fused  title")
    for n in found:
        other = str(opened.rec.item_ids[n.item_idx])
        lines += [f"{n.rank:>4}. {other:<10} {n.score:>8.4f}  {opened.title(other)}",
                  f"      {_agreement(n.cosines)}"]
    return "\n".join(lines)
