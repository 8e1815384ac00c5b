"""Cost of deterministic training in opendl.tools: the same training with enable_deterministic_training on and
off, side by side in one process, as a ratio of training images/s.

    python bench/tools_deterministic_cost.py [--images-per-class 100] [--iterations 3] [--batch-size 32]
"""

import argparse

import numpy as np

from opendl import demo, get_system
from opendl.tools import Classifier, Dataset, DatasetSplit


def run(ds, split, deterministic: bool, iterations: int, batch: int) -> float:
    tool = Classifier()
    tool.batch_size = batch
    tool.enable_deterministic_training = deterministic
    tool.train(ds, split, None, iterations=iterations)
    tool.wait_for_training_completion()
    # The first iteration includes creating the primitives; report the median of the others.
    return float(np.median([tool.training_metrics(i)["images_per_second"] for i in range(2, iterations + 1)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    labels = [c for c in demo.CLASS_NAMES for _ in range(args.images_per_class)]
    ds = Dataset.from_images([demo.make_demo_image(rng, c, 64) for c in labels], labels)
    split = DatasetSplit(ds, train=0.8, validation=0.2, seed=1)
    rates = {True: [], False: []}
    for _ in range(args.repeats):
        for det in (False, True):
            rates[det].append(run(ds, split, det, args.iterations, args.batch_size))
    off, on = max(rates[False]), max(rates[True])
    print(f"threads {get_system('thread_num')[0]}, {split.train.size} training images 64x64x1, compact classifier, "
          f"batch {args.batch_size}")
    print(f"default        {off:7.1f} images/s")
    print(f"deterministic  {on:7.1f} images/s  (ratio deterministic / default {on / off:.2f})")


if __name__ == "__main__":
    main()
