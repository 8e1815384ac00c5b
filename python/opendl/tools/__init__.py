"""Training tools in the spirit of Euresys Deep Learning Studio: non-blocking training with early stopping,
automatic batch size, deterministic and continued training, on top of opendl's core and procedures.

    from opendl.tools import Classifier, Dataset, DatasetSplit, DataAugmentation, TrainingQueue
    ds = Dataset.from_folder(path)
    split = DatasetSplit(ds, train=0.7, validation=0.2, test=0.1, seed=1)
    tool = Classifier()
    tool.train(ds, split)                  # returns at once; early stopping decides the iterations
    while tool.is_training:
        tool.wait_for_iteration_completion()
        print(tool.current_training_progression)
    tool.apply(images)

The Segmenter and Locator tools are not here yet: the segmentation model type they need exists (issue 5),
the Segmenter itself (label-image datasets and augmentation, IoU-based early stopping) and the detection type
are still to come.
"""

from ._augment import DataAugmentation
from ._data import Dataset, DatasetSplit
from ._queue import TrainingJob, TrainingQueue
from ._tool import Classifier

__all__ = ["Classifier", "DataAugmentation", "Dataset", "DatasetSplit", "TrainingJob", "TrainingQueue"]
