"""Independent numpy references for the segmentation tests: pixel confusion matrices and IoU."""

import numpy as np


def confusion(pred, gt, num_classes):
    """(num_classes, num_classes) counts, row = predicted class id, column = ground-truth class id."""
    p = np.asarray(pred, np.int64).ravel()
    g = np.asarray(gt, np.int64).ravel()
    return np.bincount(p * num_classes + g, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(conf):
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)
