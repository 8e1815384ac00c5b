"""Train a Segmenter in the background with opendl.tools while the main thread reports progress.

    python examples/python/background_segmentation.py [--images 300] [--size 64] [--out parts_segmenter.odt]

The demo scenes (textured surfaces with rings, plates and brackets; generated, no download) are written as
image and label-image files to a temporary folder and read with Dataset.from_segmentation_folders. Training
returns at once; the main thread waits for each iteration and prints the training loss, the validation mean
IoU and the progress. Early stopping (on the validation mean IoU) decides the number of iterations and the
batch size is chosen automatically. At the end the tool segments the held-out test scenes, whose mean IoU is
computed here from the label images, and is saved.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from opendl import demo
from opendl.tools import DataAugmentation, Dataset, DatasetSplit, Segmenter


def mean_iou(predictions, labels, num_classes: int) -> float:
    cm = np.zeros((num_classes, num_classes), np.int64)
    for p, g in zip(predictions, labels):
        cm += np.bincount(p.astype(np.int64).ravel() * num_classes + g.astype(np.int64).ravel(),
                          minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    present = cm.sum(0) > 0
    return float(np.mean(tp[present] / union[present]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", type=int, default=64, help="scene width and height in pixels")
    ap.add_argument("--patience", type=int, default=6, help="early stopping patience (iterations)")
    ap.add_argument("--out", default="parts_segmenter.odt", help="file the trained tool is saved to")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = demo.write_demo_segmentation_dataset(os.path.join(tmp, "parts"), num_images=args.images,
                                                   size=args.size)
        names = list(demo.SEGMENTATION_CLASS_NAMES)
        ds = Dataset.from_segmentation_folders(os.path.join(root, "images"), os.path.join(root, "labels"), names)
        split = DatasetSplit(ds, train=0.7, validation=0.15, test=0.15, seed=1)
        print(ds, split)

        tool = Segmenter(early_stopping_patience=args.patience)
        t0 = time.perf_counter()
        tool.train(ds, split, DataAugmentation(flip_horizontal=True, flip_vertical=True, rotation=15,
                                               brightness=0.05))
        print(f"train() returned after {time.perf_counter() - t0:.3f} s; training runs in the background")
        while tool.is_training:
            tool.wait_for_iteration_completion()
            n = tool.num_trained_iterations
            if n == 0 or tool.current_training_finished_iterations == 0:
                continue
            m = tool.training_metrics(n)
            print(f"iteration {n:3d} / {tool.current_training_num_iterations:3d}  "
                  f"progress {100 * tool.current_training_progression:5.1f} %  loss {m['training_loss']:.4f}  "
                  f"validation mean IoU {m['mean_iou']:.3f}  lr {m['learning_rate']:.0e}  "
                  f"batch {m['batch_size']}  {m['images_per_second']:.0f} images/s")
        n = tool.wait_for_training_completion()
        seconds = time.perf_counter() - t0
        best = tool.training_metrics(tool.best_iteration)
        print(f"early stopping after {n} iterations in {seconds:.1f} s; best iteration {tool.best_iteration} "
              f"(validation mean IoU {best['mean_iou']:.3f}); automatic batch size {tool.batch_size}; "
              f"class weights {[round(w, 2) for w in tool.class_weights]}")

        results = tool.apply([ds.image(i) for i in split.test])
        test_iou = mean_iou([r["segmentation_image"] for r in results], [ds.label_image(i) for i in split.test],
                            len(names))
        print(f"test mean IoU {test_iou:.3f} on {len(split.test)} scenes")
        tool.save(args.out)
        print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
