"""The extractor benchmarks on a GPU: text and image throughput on CUDA, fp32 against bf16 autocast (the
precision `auto` picks there), with the CPU figure for scale. One command on a lent GPU machine:

    HF_HUB_OFFLINE=1 python -m bench.gpu [--out bench-results]

On a machine without CUDA it says so and exits 0 (nothing to measure). Writes bench-results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from bench.timing import median_time


def _images(n: int, size: int = 320) -> list[str]:
    """``n`` JPEG files of smooth random colour fields, written once to a temporary folder."""
    import tempfile

    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        path = folder / f"{i}.jpg"
        Image.fromarray(base).resize((size, size), Image.BILINEAR).save(path, quality=90)
        paths.append(str(path))
    return paths


def _throughput(create, inputs: list[str], repeats: int) -> dict:
    started = time.perf_counter()
    extractor = create()
    load_s = time.perf_counter() - started
    extractor.embed(inputs[: min(32, len(inputs))])  # warm-up: kernels, cuDNN autotuning
    seconds = median_time(lambda: extractor.embed(inputs), repeats=repeats, warmup=0)["median_s"]
    return {"items_per_s": round(len(inputs) / seconds, 1), "median_s": round(seconds, 3), "load_s": round(load_s, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--items", type=int, default=2048)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench.gpu: no CUDA device here; run this on a GPU machine (nothing measured)")
        return 0
    from bench.text import product_texts
    from extractors import registry

    texts, images = product_texts(args.items), _images(max(256, args.items // 4))
    results: dict = {"machine": {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                 "platform": platform.platform()}, "benchmarks": {}}
    for name, inputs, batch in (("text/hf", texts, 256), ("image/timm", images, 128)):
        rows = {}
        for precision in ("fp32", "bf16"):
            rows[f"cuda-{precision}"] = _throughput(
                lambda n=name, p=precision, b=batch: registry.create(n, device="cuda", precision=p, batch_size=b),
                inputs, repeats=3)
        rows["cpu-fp32"] = _throughput(lambda n=name: registry.create(n, device="cpu", precision="fp32"),
                                       inputs[:128], repeats=1)
        rows["bf16_over_fp32"] = round(rows["cuda-bf16"]["items_per_s"] / rows["cuda-fp32"]["items_per_s"], 2)
        results["benchmarks"][name] = rows
        print(name, json.dumps(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(results, indent=2))
    print(f"written {out / 'gpu.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
