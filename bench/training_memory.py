"""Training memory with the layer-output gradients planned by liveness (the default) against one gradient buffer
per layer ('keep_layer_gradients' 'true'), and the step time of both, interleaved in one process.

Memory is Network::buffer_bytes: the activation, gradient and scratch buffers a training step uses (weights,
their gradients and solver state are the same either way and not counted). The networks are those of
bench_cpu_train_step.py (same --model / --batch / --size arguments).

    python bench/training_memory.py --model resnet50 --batch 16 --size 224 [--steps 2 --reps 3]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opendl as ha  # noqa: E402
from bench_cpu_train_step import build_opendl, parse  # noqa: E402


def main():
    a = parse()
    models = {}
    for mode in ("planned", "kept"):
        ha.set_system("seed_rand", 1)
        models[mode] = build_opendl(a)
        if mode == "kept":
            ha.set_dl_model_param(models[mode], "keep_layer_gradients", "true")
    rng = np.random.default_rng(0)
    batch = [{"image": rng.standard_normal((a.size, a.size, a.channels)).astype(np.float32),
              "image_label_id": int(rng.integers(a.classes)), "weights": 1.0} for _ in range(a.batch)]
    mib = {m: models[m].core("bench").buffer_bytes() / 2**20 for m in models}
    for m in models:  # warm-up
        ha.train_dl_model_batch(models[m], batch)
    times = {m: [] for m in models}
    for r in range(a.reps):
        for m in (("planned", "kept") if r % 2 == 0 else ("kept", "planned")):
            t = time.perf_counter()
            for _ in range(a.steps):
                ha.train_dl_model_batch(models[m], batch)
            times[m].append((time.perf_counter() - t) / a.steps * 1e3)
    med = {m: statistics.median(times[m]) for m in models}
    print(f"{a.model} batch {a.batch} {a.size}x{a.size}: buffers planned {mib['planned']:.0f} MiB, kept "
          f"{mib['kept']:.0f} MiB (ratio {mib['planned'] / mib['kept']:.2f}); step planned {med['planned']:.1f} ms "
          f"({min(times['planned']):.1f}..{max(times['planned']):.1f}), kept {med['kept']:.1f} ms "
          f"({min(times['kept']):.1f}..{max(times['kept']):.1f}), speed planned / kept "
          f"{med['kept'] / med['planned']:.3f}")


if __name__ == "__main__":
    main()
