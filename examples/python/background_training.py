"""Train a classifier in the background with opendl.tools while the main thread reports progress.

    python examples/python/background_training.py [--images-per-class 150] [--out washer_tool.odt]

The demo washer images (good, scratch, contamination, notch; generated, no download) are written to a
temporary folder and read with Dataset.from_folder. Training returns at once; the main thread waits for each
iteration and prints the training loss, the validation error and the progress. Early stopping decides the
number of iterations and the batch size is chosen automatically. At the end the tool (with the best
iteration's weights) classifies the test images, is saved, loaded again and trained two iterations further.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from opendl import demo
from opendl.tools import Classifier, DataAugmentation, Dataset, DatasetSplit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=150)
    ap.add_argument("--patience", type=int, default=8, help="early stopping patience (iterations)")
    ap.add_argument("--out", default="washer_tool.odt", help="file the trained tool is saved to")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = demo.write_demo_dataset(os.path.join(tmp, "washers"), num_per_class=args.images_per_class, seed=7)
        ds = Dataset.from_folder(folder)
        split = DatasetSplit(ds, train=0.7, validation=0.2, test=0.1, seed=1)
        print(ds, split)

        tool = Classifier(early_stopping_patience=args.patience)
        t0 = time.perf_counter()
        tool.train(ds, split, DataAugmentation(flip_horizontal=True, flip_vertical=True, rotation=10,
                                               brightness=0.05))
        print(f"train() returned after {time.perf_counter() - t0:.3f} s; training runs in the background")
        while tool.is_training:
            tool.wait_for_iteration_completion()
            done = tool.current_training_finished_iterations
            if done == 0 or done > tool.num_trained_iterations:
                continue
            m = tool.training_metrics(tool.num_trained_iterations)
            print(f"iteration {tool.num_trained_iterations:3d} / {tool.current_training_num_iterations:3d}  "
                  f"progress {100 * tool.current_training_progression:5.1f} %  loss {m['training_loss']:.4f}  "
                  f"validation error {m['validation_error']:.3f}  lr {m['learning_rate']:.0e}  "
                  f"batch {m['batch_size']}  {m['images_per_second']:.0f} images/s")
        n = tool.wait_for_training_completion()
        seconds = time.perf_counter() - t0
        best = tool.training_metrics(tool.best_iteration)
        print(f"early stopping after {n} iterations in {seconds:.1f} s; best iteration {tool.best_iteration} "
              f"(validation error {best['validation_error']:.3f}); automatic batch size {tool.batch_size}")

        test_images = [ds.image(i) for i in split.test]
        results = tool.apply(test_images)
        truth = [ds.class_names[k] for k in ds.labels[split.test]]
        accuracy = np.mean([r["classification_class_names"][0] == t for r, t in zip(results, truth)])
        print(f"test accuracy {100 * accuracy:.1f} % on {len(truth)} images; "
              f"inference batch size for maximum speed {tool.batch_size_for_maximum_inference_speed}")

        tool.save(args.out)
        again = Classifier.load(args.out)
        again.train(ds, split, None, iterations=2)        # continue: an explicit count after early stopping
        again.wait_for_training_completion()
        print(f"saved to {args.out}; loaded and trained on to {again.num_trained_iterations} iterations")


if __name__ == "__main__":
    main()
