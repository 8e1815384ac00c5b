"""Train a Locator (object detection) in the background with opendl.tools while the main thread reports progress.

    python examples/python/part_detection.py [--images 400] [--capacity low] [--out parts_locator.odt]

The demo scenes (textured surfaces with rings, plates and brackets; generated, no download) are written as
image files with a COCO annotation file of their boxes to a temporary folder and read with Dataset.from_coco.
Training returns at once; the main thread waits for each iteration and prints the training loss, the
validation mean AP and the progress. Early stopping (on the validation mean AP) decides the number of
iterations and the batch size is chosen automatically. At the end the tool finds the parts in the held-out test
scenes; the example prints, per scene, the true boxes next to the found ones, and saves the tool.
"""

import argparse
import os
import tempfile
import time

from opendl import demo
from opendl.tools import DataAugmentation, Dataset, DatasetSplit, Locator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--capacity", default="low", choices=["low", "medium", "high"])
    ap.add_argument("--patience", type=int, default=6, help="early stopping patience (iterations)")
    ap.add_argument("--out", default="parts_locator.odt", help="file the trained tool is saved to")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = demo.write_demo_detection_dataset(os.path.join(tmp, "parts"), num_images=args.images)
        ds = Dataset.from_coco(os.path.join(root, "annotations.json"), os.path.join(root, "images"))
        split = DatasetSplit(ds, train=0.7, validation=0.15, test=0.15, seed=1)
        print(ds, split)

        tool = Locator(capacity=args.capacity, early_stopping_patience=args.patience,
                       detection_param={"min_confidence": 0.5})
        t0 = time.perf_counter()
        tool.train(ds, split, DataAugmentation(flip_horizontal=True, flip_vertical=True, brightness=0.05))
        print(f"train() returned after {time.perf_counter() - t0:.3f} s; training runs in the background")
        while tool.is_training:
            tool.wait_for_iteration_completion()
            n = tool.num_trained_iterations
            if n == 0 or tool.current_training_finished_iterations == 0:
                continue
            m = tool.training_metrics(n)
            print(f"iteration {n:3d} / {tool.current_training_num_iterations:3d}  "
                  f"progress {100 * tool.current_training_progression:5.1f} %  loss {m['training_loss']:.4f}  "
                  f"validation mean AP {m['mean_ap']:.3f} (AP@0.5 {m['ap_50']:.3f})  lr {m['learning_rate']:.0e}  "
                  f"batch {m['batch_size']}  {m['images_per_second']:.0f} images/s")
        n = tool.wait_for_training_completion()
        seconds = time.perf_counter() - t0
        best = tool.training_metrics(tool.best_iteration)
        print(f"early stopping after {n} iterations in {seconds:.1f} s; best iteration {tool.best_iteration} "
              f"(validation mean AP {best['mean_ap']:.3f}, AP@0.5 {best['ap_50']:.3f}); automatic batch size "
              f"{tool.batch_size}")

        names = dict(zip(ds.class_ids, ds.class_names))
        test = [int(i) for i in split.test[:5]]
        for i, r in zip(test, tool.apply([ds.image(i) for i in test])):
            truth = ds.boxes(i)
            print(f"scene {i}: true " + ", ".join(
                f"{names[c]} ({r1:.0f}, {c1:.0f}, {r2:.0f}, {c2:.0f})" for c, r1, c1, r2, c2 in
                zip(truth["bbox_label_id"], truth["bbox_row1"], truth["bbox_col1"], truth["bbox_row2"],
                    truth["bbox_col2"])))
            print("          found " + ", ".join(
                f"{n} {p:.2f} ({r1:.0f}, {c1:.0f}, {r2:.0f}, {c2:.0f})" for n, p, r1, c1, r2, c2 in
                zip(r["bbox_class_name"], r["bbox_confidence"], r["bbox_row1"], r["bbox_col1"], r["bbox_row2"],
                    r["bbox_col2"])))
        tool.save(args.out)
        print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
