"""Trains a small CNN built with HALCON's layer operators on generated inspection images (a part with one of
four defect types: none, scratch, spot, crack) on the CPU, then reports held-out accuracy.

    python examples/python/train_layer_model.py [--steps 150]
"""

import argparse
import time

import numpy as np

import opendl as ha

CLASSES = ["good", "scratch", "spot", "crack"]


def make_image(rng, cls, size=32):
    """A bright disc-shaped part on a textured background with a class-specific defect."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    img = 40 + 10 * rng.standard_normal((size, size)).astype(np.float32)
    part = (yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.38) ** 2
    img[part] = 170 + 6 * rng.standard_normal(part.sum())
    if cls == 1:  # scratch: a thin dark line at a random angle
        a = rng.uniform(0, np.pi)
        d = np.abs((xx - cx) * np.sin(a) - (yy - cy) * np.cos(a))
        img[(d < 0.8) & part] = 60
    elif cls == 2:  # spot: a small dark blob
        sy, sx = cy + rng.uniform(-5, 5), cx + rng.uniform(-5, 5)
        img[((yy - sy) ** 2 + (xx - sx) ** 2 < 6) & part] = 70
    elif cls == 3:  # crack: a jagged bright-dark edge from the rim inwards
        x = int(cx + rng.uniform(-4, 4))
        for y in range(int(cy), min(size, int(cy + size * 0.38))):
            x += int(rng.integers(-1, 2))
            img[y, max(0, x):min(size, x + 2)] = 20
    # HALCON's classifier range: gray values shifted into -127..128.
    return (img - 127.0).astype(np.float32)[:, :, None]


def build(size=32):
    img = ha.create_dl_layer_input("image", [size, size, 1], [], [])
    lab = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    w = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    h = img
    for i, k in enumerate([16, 32, 64]):
        h = ha.create_dl_layer_convolution(h, f"conv{i}", 3, 1, 1, k, 1, "half_kernel_size", "none", [], [])
        h = ha.create_dl_layer_batch_normalization(h, f"bn{i}", 0.9, 1e-4, "relu", [], [])
        h = ha.create_dl_layer_pooling(h, f"pool{i}", [2, 2], [2, 2], "none", "maximum", [], [])
    h = ha.create_dl_layer_pooling(h, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    h = ha.create_dl_layer_dense(h, "fc", len(CLASSES), [], [])
    sm = ha.create_dl_layer_softmax(h, "softmax", [], [])
    loss = ha.create_dl_layer_loss_cross_entropy(sm, lab, w, "loss", 1.0, [], [])
    return ha.create_dl_model(loss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    ha.set_system("seed_rand", 42)
    rng = np.random.default_rng(0)
    model = build()
    ha.set_dl_model_param(model, "batch_size", args.batch)
    ha.set_dl_model_param(model, "solver_type", "adam")
    ha.set_dl_model_param(model, "learning_rate", 0.003)
    ha.set_dl_model_param(model, "weight_prior", 1e-5)
    t0 = time.perf_counter()
    for step in range(args.steps):
        ids = rng.integers(0, len(CLASSES), args.batch)
        batch = [{"image": make_image(rng, c), "image_label_id": int(c), "weights": 1.0} for c in ids]
        res = ha.as_python_dict_s(ha.train_dl_model_batch(model, batch))
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  total_loss {res['total_loss']:.4f}")
    train_s = time.perf_counter() - t0
    test_rng = np.random.default_rng(1)
    correct = total = 0
    for _ in range(8):
        ids = test_rng.integers(0, len(CLASSES), args.batch)
        res = [ha.as_python_dict(r) for r in ha.apply_dl_model(model, [{"image": make_image(test_rng, c)} for c in ids], [])]
        correct += sum(int(np.argmax(r["softmax"])) == c for r, c in zip(res, ids))
        total += len(ids)
    print(f"trained {args.steps} steps of batch {args.batch} in {train_s:.1f} s; "
          f"held-out accuracy {correct / total:.3f} on {total} images")


if __name__ == "__main__":
    main()
