"""Training tools in the spirit of Euresys Deep Learning Studio: non-blocking training with early stopping,
automatic batch size, deterministic and continued training, on top of opendl's core and procedures.

    from opendl.tools import Classifier, Segmenter, Locator, Dataset, DatasetSplit, DataAugmentation, TrainingQueue
    ds = Dataset.from_folder(path)
    split = DatasetSplit(ds, train=0.7, validation=0.2, test=0.1, seed=1)
    tool = Classifier()
    tool.train(ds, split)                  # returns at once; early stopping decides the iterations
    while tool.is_training:
        tool.wait_for_iteration_completion()
        print(tool.current_training_progression)
    tool.apply(images)

The Segmenter trains the same way on datasets of label images (``Dataset.from_segmentation_folders``,
``Dataset.from_images`` with label images): augmentation moves the labels with the images, and early stopping
follows the validation mean IoU. The Locator (object detection) trains on box datasets (``Dataset.from_coco``,
``Dataset.from_images`` with box dicts): augmentation moves the boxes, and early stopping follows the
validation mean AP.
"""

from ._augment import DataAugmentation
from ._data import Dataset, DatasetSplit
from ._locator import Locator
from ._queue import TrainingJob, TrainingQueue
from ._segmenter import Segmenter
from ._tool import Classifier

__all__ = ["Classifier", "DataAugmentation", "Dataset", "DatasetSplit", "Locator", "Segmenter", "TrainingJob",
           "TrainingQueue"]
