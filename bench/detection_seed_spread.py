"""Spread of the detection test's accuracy over training seeds: the detector of tests/python/test_detection.py
(compact backbone, capacity low, 64 x 64 generated scenes of three parts) trained once per seed s on 400 scenes
drawn with seed s, shuffled per pass with seed pass + 100 s, and evaluated on the test's 64 held-out scenes.
Run it with two builds (PYTHONPATH pointing at each) to tell a change in accuracy from seed-to-seed noise.

    python bench/detection_seed_spread.py [SEED ...]      (default seeds 0-5; about 40 s per seed on 2 cores)
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import opendl as ha  # noqa: E402
from detection_helpers import KEYS, detections, mean_ap, scene, train_detector  # noqa: E402


def main():
    seeds = [int(s) for s in sys.argv[1:]] or list(range(6))
    test = [scene(np.random.default_rng(5000 + i)) for i in range(64)]
    truths = [b for _, b in test]
    m50, mcoco = [], []
    for s in seeds:
        t = time.time()
        param = {"image_dimensions": [64, 64, 1], "class_ids": [1, 2, 3],
                 "class_names": ["ring", "plate", "bracket"], "capacity": "low"}
        model = ha.create_dl_model_detection("pretrained_dl_classifier_compact.hdl", 3, param)
        rng = np.random.default_rng(s)
        train_detector(model, [scene(rng) for _ in range(400)], shuffle_seed=100 * s)
        ha.set_dl_model_param(model, "min_confidence", 0.05)
        dets = detections(model, test, ("bbox_class_id", "bbox_confidence") + KEYS)
        m50.append(mean_ap(dets, truths, [1, 2, 3]))
        mcoco.append(mean_ap(dets, truths, [1, 2, 3], np.arange(0.5, 0.96, 0.05)))
        print(f"seed {s}: mAP@0.5 {m50[-1]:.3f}  mAP@[0.5:0.95] {mcoco[-1]:.3f}  ({time.time() - t:.0f} s)",
              flush=True)
    print(f"mean over {len(seeds)} seeds: mAP@0.5 {np.mean(m50):.3f} (sd {np.std(m50, ddof=1) if len(seeds) > 1 else 0:.3f})"
          f"  mAP@[0.5:0.95] {np.mean(mcoco):.3f} (sd {np.std(mcoco, ddof=1) if len(seeds) > 1 else 0:.3f})")


if __name__ == "__main__":
    main()
