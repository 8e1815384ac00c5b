"""Train a built-in classifier with HALCON's operators only, evaluate it on held-out images and write it.

    python examples/python/classification.py [--steps 200] [--out classifier.hdl]

The images are generated (no download): 32 x 32 gray-value images of three kinds of surface texture an
inspection system tells apart: horizontal scratches, vertical scratches and round spots, each at a random
position, contrast and noise level. They are byte images scaled to HALCON's classifier input range
-127..128 (spec E.8: 'none' normalisation of byte images) and stored as 'real' images in DLSample dicts.
The built-in 'pretrained_dl_classifier_compact.hdl' starts from seeded random weights (opendl ships no
HALCON weights), so this trains from scratch.
"""

import argparse
import os
import tempfile
import time

import numpy as np

import opendl as ha

CLASS_NAMES = ["scratch_horizontal", "scratch_vertical", "spot"]


def make_image(rng, label, size=32):
    """A byte image of the given class, converted to the classifier's real-valued input range."""
    img = rng.normal(100.0, rng.uniform(5, 20), (size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    amp = rng.uniform(40, 90) * rng.choice([-1, 1])
    if label == 0:  # a horizontal scratch: thin bright or dark line over part of the width
        r, c0 = rng.integers(3, size - 3), rng.integers(0, size // 3)
        img[r:r + rng.integers(1, 3), c0:c0 + rng.integers(size // 2, size - c0)] += amp
    elif label == 1:
        c, r0 = rng.integers(3, size - 3), rng.integers(0, size // 3)
        img[r0:r0 + rng.integers(size // 2, size - r0), c:c + rng.integers(1, 3)] += amp
    else:  # a round spot
        r, c, rad = rng.uniform(6, size - 6), rng.uniform(6, size - 6), rng.uniform(2.5, 5)
        img[(yy - r) ** 2 + (xx - c) ** 2 <= rad ** 2] += amp
    img = np.clip(img, 0, 255).astype(np.uint8)
    return (img.astype(np.float32) - 127.0)[:, :, None]  # range -127..128, one channel


def make_samples(rng, n, class_ids):
    samples = []
    for i in range(n):
        label = class_ids[i % len(class_ids)]
        s = ha.create_dict()
        ha.set_dict_object(make_image(rng, label), s, "image")
        ha.set_dict_tuple(s, "image_label_id", label)
        samples.append(s)
    rng.shuffle(samples)
    return samples


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "opendl_classifier.hdl"))
    args = ap.parse_args()

    ha.set_system("seed_rand", 42)
    model = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(model, "image_dimensions", [32, 32, 1])
    ha.set_dl_model_param(model, "class_names", CLASS_NAMES)
    ha.set_dl_model_param(model, "class_ids", [0, 1, 2])
    ha.set_dl_model_param(model, "batch_size", args.batch_size)
    ha.set_dl_model_param(model, "solver_type", "adam")
    ha.set_dl_model_param(model, "learning_rate", 0.002)

    rng = np.random.default_rng(7)
    class_ids = ha.get_dl_model_param(model, "class_ids")
    train = make_samples(rng, 1200, class_ids)
    test = make_samples(np.random.default_rng(8), 300, class_ids)

    t0 = time.perf_counter()
    for step in range(args.steps):
        if step == int(0.7 * args.steps):  # one learning-rate step, like a HALCON change strategy
            ha.set_dl_model_param(model, "learning_rate", 0.0002)
        start = (step * args.batch_size) % (len(train) - args.batch_size)
        res = ha.train_dl_model_batch(model, train[start:start + args.batch_size])
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step:4d}  total_loss {ha.get_dict_tuple_s(res, 'total_loss'):.4f}")
    train_time = time.perf_counter() - t0

    correct = 0
    for start in range(0, len(test), args.batch_size):
        batch = test[start:start + args.batch_size]
        for sample, result in zip(batch, ha.apply_dl_model(model, batch, [])):
            predicted = ha.get_dict_tuple(result, "classification_class_ids")[0]
            correct += predicted == ha.get_dict_tuple_s(sample, "image_label_id")
    accuracy = correct / len(test)
    print(f"trained {args.steps} steps of {args.batch_size} images in {train_time:.1f} s; "
          f"held-out accuracy {accuracy:.3f} on {len(test)} images")

    ha.write_dl_model(model, args.out)
    reread = ha.read_dl_model(args.out)
    print(f"wrote {args.out}; re-read model classes: {ha.get_dl_model_param(reread, 'class_names')}")
    return 0 if accuracy >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
