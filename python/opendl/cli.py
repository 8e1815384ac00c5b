"""The opendl command: train, evaluate and predict with HALCON's workflow procedures.

    opendl train                          # the embedded demo dataset (generated washers, 4 classes), CPU
    opendl train DATA --type classification [--model pretrained_dl_classifier_compact.hdl] [--epochs N] ...
    opendl train [DATA] --type segmentation [--class-names bg,a,b]   # DATA/images + DATA/labels
    opendl train [DATA] --type detection                           # DATA/annotations.json (COCO) + DATA/images
    opendl evaluate RUN_DIR/model_best.hdl DATA
    opendl predict RUN_DIR/model_best.hdl IMAGE [IMAGE ...]
    opendl --cmakedir | --include | --libdir | --version     # for C++ users

`opendl train` runs read_dl_dataset_classification (segmentation: read_dl_dataset_segmentation, detection:
read_dl_dataset_from_coco) -> split_dl_dataset -> create_dl_preprocess_param_from_model (detection:
create_dl_model_detection first) -> preprocess_dl_dataset -> create_dl_train_param -> train_dl_model ->
evaluate_dl_model, and writes into the run directory: model_best.hdl (best validation top-1 error,
segmentation: mean IoU, detection: mean AP) and model_final.hdl with their _info.hdict files,
training_progress.png, confusion_matrix.png (test split), evaluation.json and summary.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .training import _measure, _sub, confusion_matrix_of, save_confusion_matrix_plot


def _locations(args) -> int:
    from . import __version__, cmake_dir
    here = os.path.dirname(__file__)
    if args.cmakedir:
        print(cmake_dir())
    elif args.include:
        print(os.path.join(here, "include"))
    elif args.libdir:
        print(os.path.join(here, "lib"))
    else:
        print(__version__)
    return 0


def _jsonable(v):
    from ._handles import HHandle
    if isinstance(v, HHandle):
        from .dicts import as_python_dict
        v = as_python_dict(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def _dataset(ha, args, run: str):
    """(DLDataset, class names, default image size, default channels) of the train command."""
    from .demo import (CLASS_NAMES, SEGMENTATION_CLASS_NAMES, write_demo_dataset, write_demo_detection_dataset,
                       write_demo_segmentation_dataset)
    seg, det = args.type == "segmentation", args.type == "detection"
    if args.data is None:
        data = os.path.join(run, "demo_data")
        t0 = time.perf_counter()
        if seg:
            write_demo_segmentation_dataset(data, num_images=args.demo_images, seed=args.seed)
            what = f"{args.demo_images} scenes ({len(SEGMENTATION_CLASS_NAMES)} classes with background)"
        elif det:
            write_demo_detection_dataset(data, num_images=args.demo_images, seed=args.seed)
            what = f"{args.demo_images} scenes with boxes of {len(SEGMENTATION_CLASS_NAMES) - 1} classes"
        else:
            write_demo_dataset(data, num_per_class=args.demo_images // len(CLASS_NAMES), seed=args.seed)
            what = f"{len(CLASS_NAMES)} classes x {args.demo_images // len(CLASS_NAMES)} images"
        print(f"demo dataset: {what} (64 x 64) written to {data} in {time.perf_counter() - t0:.1f} s")
        size, channels = 64, 1
    else:
        data, size, channels = args.data, 128, 3
    if det:
        ds = ha.read_dl_dataset_from_coco(os.path.join(data, "annotations.json"), os.path.join(data, "images"), [])
        return ds, ha.get_dict_tuple(ds, "class_names"), args.image_size or size, args.image_channels or channels
    if seg:
        names = list(SEGMENTATION_CLASS_NAMES) if args.data is None else args.class_names.split(",")
        ds = ha.read_dl_dataset_segmentation(os.path.join(data, "images"), os.path.join(data, "labels"), names,
                                             list(range(len(names))), [], [], [])
    else:
        ds = ha.read_dl_dataset_classification(data, args.label_source)
    return ds, ha.get_dict_tuple(ds, "class_names"), args.image_size or size, args.image_channels or channels


def train(args) -> int:
    import opendl as ha
    t_all = time.perf_counter()
    seg, det = args.type == "segmentation", args.type == "detection"
    run = os.path.abspath(args.run_dir or time.strftime("opendl_run_%Y%m%d_%H%M%S"))
    os.makedirs(run, exist_ok=True)
    ha.set_system("seed_rand", args.seed)
    ds, class_names, size, channels = _dataset(ha, args, run)
    n = len(ha.get_dict_tuple(ds, "samples"))
    print(f"dataset: {n} images, classes {class_names}")
    ha.split_dl_dataset(ds, args.train_percent, args.validation_percent, [])
    num_train = sum(ha.get_dict_tuple_s(s, "split") == "train" for s in ha.get_dict_tuple(ds, "samples"))
    if int(num_train // args.batch_size * args.epochs) < 1:
        raise _Usage(f"--epochs {args.epochs:g} with {num_train} training images and --batch-size {args.batch_size} "
                     "gives no training iteration")
    class_ids = ha.get_dict_tuple(ds, "class_ids")
    if det:
        model = ha.create_dl_model_detection(args.model or "pretrained_dl_classifier_compact.hdl", len(class_ids), {
            "image_dimensions": [size, size, channels], "class_ids": class_ids, "class_names": class_names,
            "capacity": args.capacity})
    else:
        model = ha.read_dl_model(args.model or ("pretrained_dl_segmentation_compact.hdl" if seg else
                                                "pretrained_dl_classifier_compact.hdl"))
        ha.set_dl_model_param(model, "image_dimensions", [size, size, channels])
        ha.set_dl_model_param(model, "class_names", class_names)
        ha.set_dl_model_param(model, "class_ids", class_ids)
    ha.set_dl_model_param(model, "batch_size", args.batch_size)
    ha.set_dl_model_param(model, "solver_type", args.solver)
    ha.set_dl_model_param(model, "learning_rate", args.learning_rate)
    if args.solver == "sgd":
        ha.set_dl_model_param(model, "momentum", 0.9)
    ha.set_dl_model_param(model, "weight_prior", args.weight_prior)
    pp = ha.create_dl_preprocess_param_from_model(model, "none", "full_domain", [], [], [])
    t0 = time.perf_counter()
    ds_file = ha.preprocess_dl_dataset(ds, os.path.join(run, "preprocessed"), pp,
                                       ha.from_python_dict({"overwrite_files": "true", "show_progress": "false"}))
    print(f"preprocessed into {os.path.dirname(ds_file)} in {time.perf_counter() - t0:.1f} s")
    ds = ha.read_dict(ds_file, [], [])
    change = ha.from_python_dict({"model_param": "learning_rate", "initial_value": args.learning_rate,
                                  "epochs": [0.7 * args.epochs], "values": [0.1 * args.learning_rate]})
    serialize = [ha.from_python_dict({"type": "best", "basename": os.path.join(run, "model_best")}),
                 ha.from_python_dict({"type": "final", "basename": os.path.join(run, "model_final")})]
    names = ["change", "serialize", "augment", "display"]
    values = [[change], serialize, ha.from_python_dict({"augmentation_percentage": 50, "mirror": "rc"}),
              ha.from_python_dict({"plot_dir": run})]
    if args.patience:
        names.append("early_stopping")
        values.append(ha.from_python_dict({"patience": args.patience}))
    train_param = ha.create_dl_train_param(model, args.epochs, args.evaluation_interval, "false" if args.quiet else "true",
                                           args.seed, names, values)
    key = ha.get_dict_tuple(train_param, "evaluation_comparison_keys")[0]
    t0 = time.perf_counter()
    results, infos, evals = ha.train_dl_model(ds, model, train_param, 0)
    train_s = time.perf_counter() - t0
    last_info = ha.as_python_dict(infos[-1])
    # without a validation split or evaluations there is no best model: the final one is evaluated
    chosen = "model_best.hdl" if os.path.isfile(os.path.join(run, "model_best.hdl")) else "model_final.hdl"
    best = ha.read_dl_model(os.path.join(run, chosen))
    test_split = "test" if any(ha.get_dict_tuple_s(s, "split") == "test"
                               for s in ha.get_dict_tuple(ds, "samples")) else "validation"
    measures = ["all"] if seg or det else ["top1_error", "precision", "recall", "f_score", "absolute_confusion_matrix",
                                    "relative_confusion_matrix"]
    result, _ = ha.evaluate_dl_model(ds, best, "split", test_split, ha.from_python_dict({"measures": measures}))
    res = ha.as_python_dict(result)
    with open(os.path.join(run, "evaluation.json"), "w") as f:
        json.dump(_jsonable(res), f, indent=1)
    if det:
        r = _sub(_sub(res["max_num_detections_all"])["area_all"])
        per_class = _sub(r["mean_iou_ap"])
        aps = ", ".join(f"{n} {per_class[f'class_{c}'][0]:.3f}" for n, c in zip(class_names, class_ids))
        test_line = (f"mean_ap (IoU 0.5:0.95) {r['mean_ap'][0]:.4f}, AP@0.5 "
                     f"{_sub(r['ap_iou_05'])['mean_class_ap'][0]:.4f}; AP per class: {aps}")
    elif seg:
        ious = ", ".join(f"{n} {v:.3f}" for n, v in zip(class_names, res["class_iou"]))
        test_line = (f"mean_iou {_measure(res, 'mean_iou'):.4f}, pixel accuracy "
                     f"{100 * _measure(res, 'pixel_accuracy'):.1f} %; class IoU: {ious}")
    else:
        cm = confusion_matrix_of(res)
        if cm is not None:
            save_confusion_matrix_plot(cm, class_names, os.path.join(run, "confusion_matrix.png"))
        top1 = _measure(res, "top1_error")
        test_line = (f"top1_error {top1:.4f} (accuracy {100 * (1 - top1):.1f} %), mean precision "
                     f"{_measure(res, 'mean_precision') or 0:.3f}, mean recall {_measure(res, 'mean_recall') or 0:.3f}")
    lines = [
        f"run directory        {run}",
        f"iterations           {len(results)} ({last_info['epoch'][0]:.2f} epochs, batch {args.batch_size})",
        f"training time        {train_s:.1f} s ({len(results) * args.batch_size / train_s:.0f} images/s)",
        f"data pipeline        {last_info['data_samples_per_second'][0]:.0f} samples/s in the background loader; "
        f"the step waited {last_info['data_wait_seconds'][0]:.2f} s for data in total",
        (f"best validation      {key} {last_info['best_evaluation_value'][0]:.4f} at epoch "
         f"{last_info['best_epoch'][0]:.2f}" if "best_evaluation_value" in last_info else
         "best validation      none (no validation split or no evaluation): model_final.hdl is evaluated"),
        f"{test_split} split{' ' * (15 - len(test_split))}{test_line}",
        "files                " + ", ".join(f for f in ("model_best.hdl", "model_final.hdl", "training_progress.png",
                                                          "confusion_matrix.png", "evaluation.json")
                                              if os.path.isfile(os.path.join(run, f))) + ", summary.txt",
        f"total time           {time.perf_counter() - t_all:.1f} s",
    ]
    text = "\n".join(lines)
    with open(os.path.join(run, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


def evaluate(args) -> int:
    import opendl as ha
    model = ha.read_dl_model(args.model)
    det = ha.get_dl_model_param(model, "type")[0] == "detection"
    if det:
        ds = ha.read_dl_dataset_from_coco(os.path.join(args.data, "annotations.json"), os.path.join(args.data, "images"),
                                          [])
    else:
        ds = ha.read_dl_dataset_classification(args.data, args.label_source)
    with_tmp = args.work_dir or os.path.join(os.path.dirname(os.path.abspath(args.model)), "evaluate_preprocessed")
    pp = ha.create_dl_preprocess_param_from_model(model, "none", "full_domain", [], [], [])
    ds_file = ha.preprocess_dl_dataset(ds, with_tmp, pp, ha.from_python_dict({"overwrite_files": "true",
                                                                              "show_progress": "false"}))
    ds = ha.read_dict(ds_file, [], [])
    n = len(ha.get_dict_tuple(ds, "samples"))
    if det:
        result, _ = ha.evaluate_dl_model(ds, model, "sample_indices", list(range(n)), [])
        r = _sub(_sub(ha.as_python_dict(result)["max_num_detections_all"])["area_all"])
        print(f"{n} images: mean_ap (IoU 0.5:0.95) {r['mean_ap'][0]:.4f}, AP@0.5 "
              f"{_sub(r['ap_iou_05'])['mean_class_ap'][0]:.4f}, AP@0.75 {_sub(r['ap_iou_075'])['mean_class_ap'][0]:.4f}")
        return 0
    result, _ = ha.evaluate_dl_model(ds, model, "sample_indices", list(range(n)), ha.from_python_dict(
        {"measures": ["top1_error", "precision", "recall", "f_score", "absolute_confusion_matrix"]}))
    res = ha.as_python_dict(result)
    top1 = _measure(res, "top1_error")
    print(f"{n} images: top1_error {top1:.4f} (accuracy {100 * (1 - top1):.1f} %), mean precision "
          f"{_measure(res, 'mean_precision'):.3f}, mean recall {_measure(res, 'mean_recall'):.3f}, mean F-score "
          f"{_measure(res, 'mean_f_score'):.3f}")
    cm = confusion_matrix_of(res)
    if cm is not None:
        names = ha.get_dl_model_param(model, "class_names")
        print("confusion matrix (rows: predicted, columns: ground truth; " + ", ".join(names) + ")")
        print(np.array2string(np.asarray(cm)))
    return 0


def _boxes_line(d: dict, image, model, ha) -> str:
    """The detections of a DLResult in the coordinates of the image file (preprocessing zoomed it to the model's
    size: a pixel centre p maps back to (p + 0.5) * factor - 0.5)."""
    h, w = np.asarray(image).shape[:2]
    mw, mh = ha.get_dl_model_param(model, "image_width")[0], ha.get_dl_model_param(model, "image_height")[0]
    fr, fc = h / mh, w / mw
    out = []
    for k, (name, conf) in enumerate(zip(d["bbox_class_name"], d["bbox_confidence"])):
        if "bbox_row1" in d:
            r1, c1, r2, c2 = ((d[key][k] + 0.5) * f - 0.5 for key, f in
                              (("bbox_row1", fr), ("bbox_col1", fc), ("bbox_row2", fr), ("bbox_col2", fc)))
            out.append(f"{name} {conf:.3f} (row1 {r1:.1f}, col1 {c1:.1f}, row2 {r2:.1f}, col2 {c2:.1f})")
        else:
            out.append(f"{name} {conf:.3f} (row {(d['bbox_row'][k] + 0.5) * fr - 0.5:.1f}, col "
                       f"{(d['bbox_col'][k] + 0.5) * fc - 0.5:.1f}, phi {d['bbox_phi'][k]:.3f}, length1 "
                       f"{d['bbox_length1'][k]:.1f}, length2 {d['bbox_length2'][k]:.1f}; lengths in model pixels)")
    return "; ".join(out) if out else "no objects"


def predict(args) -> int:
    import opendl as ha
    model = ha.read_dl_model(args.model)
    pp = ha.create_dl_preprocess_param_from_model(model, "none", "full_domain", [], [], [])
    bs = ha.get_dl_model_param_s(model, "batch_size")
    for start in range(0, len(args.images), bs):
        files = args.images[start:start + bs]
        images = [ha.read_image(f) for f in files]
        samples = ha.gen_dl_samples_from_images(images)
        ha.preprocess_dl_samples(samples, pp)
        for f, img, r in zip(files, images, ha.apply_dl_model(model, samples, [])):
            d = ha.as_python_dict(r)
            if "bbox_class_id" in d:
                print(f"{f}: " + _boxes_line(d, img, model, ha))
                continue
            top = ", ".join(f"{n} {c:.3f}" for n, c in zip(d["classification_class_names"][:args.top_k],
                                                          d["classification_confidences"][:args.top_k]))
            print(f"{f}: {top}")
    return 0


class _Usage(Exception):
    """A command-line value that cannot work, found after argparse (printed like argparse's errors)."""


def _number(kind, low, high=None, low_open=False):
    """An argparse type: a number of `kind` in [low, high] (low excluded with low_open)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if v != v or (v <= low if low_open else v < low) or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"{text} is not {'>' if low_open else '>='} {low:g}"
                                             + (f" and <= {high:g}" if high is not None else ""))
        return v
    return parse


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("--") and argv[0] not in ("-h", "--help"):
        p = argparse.ArgumentParser(prog="opendl", description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--cmakedir", action="store_true", help="directory of opendlConfig.cmake")
        g.add_argument("--include", action="store_true", help="directory of the C++ headers")
        g.add_argument("--libdir", action="store_true", help="directory of libopendl.so")
        g.add_argument("--version", action="store_true")
        return _locations(p.parse_args(argv))
    p = argparse.ArgumentParser(prog="opendl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (no DATA: the embedded demo dataset)")
    t.add_argument("data", nargs="?", help="classification: folder of images, one sub-folder per class; segmentation: "
                                          "folder with images/ and labels/ (label images of the same names, pixel "
                                          "value = class id); detection: folder with annotations.json (COCO boxes) "
                                          "and images/; default: the demo dataset of the type")
    t.add_argument("--type", default="classification", choices=["classification", "segmentation", "detection"])
    t.add_argument("--class-names", help="segmentation: comma-separated class names of ids 0, 1, ...")
    t.add_argument("--capacity", default="medium", choices=["high", "medium", "low"],
                   help="detection: size of the feature pyramid and heads")
    t.add_argument("--model", help="built-in name or model file (default: the compact network of the type)")
    t.add_argument("--run-dir", help="output directory (default: ./opendl_run_<date>_<time>)")
    t.add_argument("--label-source", default="last_folder", choices=["last_folder", "file_name",
                                                                     "file_name_remove_index"])
    t.add_argument("--epochs", type=_number(float, 0, 1e9, low_open=True), default=16)
    t.add_argument("--batch-size", type=_number(int, 1, 65536), default=32)
    t.add_argument("--solver", default="adam", choices=["adam", "sgd"])
    t.add_argument("--learning-rate", type=_number(float, 0, 1e6, low_open=True), default=0.002)
    t.add_argument("--weight-prior", type=_number(float, 0, 1e6), default=0.0001)
    t.add_argument("--image-size", type=_number(int, 1, 65536), help="square input size (default 64 for the demo, "
                                                                     "else 128)")
    t.add_argument("--image-channels", type=int, choices=[1, 3], help="default 1 for the demo, else 3")
    t.add_argument("--train-percent", type=_number(float, 0, 100, low_open=True), default=70)
    t.add_argument("--validation-percent", type=_number(float, 0, 100), default=15)
    t.add_argument("--evaluation-interval", type=_number(float, 0, 1e9), default=1,
                   help="epochs between evaluations (0: none; model_final.hdl is then evaluated)")
    t.add_argument("--patience", type=_number(int, 0), default=0, help="early stopping after this many evaluations "
                                                                       "without improvement (0: off)")
    t.add_argument("--seed", type=_number(int, 0, 2 ** 63 - 1), default=42)
    t.add_argument("--demo-images", type=_number(int, 8, 10 ** 6), default=1000,
                   help="demo dataset size (all classes together, at least 8)")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no training plot")
    e = sub.add_parser("evaluate", help="evaluate a classifier on a folder dataset, or a detector on a folder with "
                                         "annotations.json (COCO) and images/")
    e.add_argument("model")
    e.add_argument("data")
    e.add_argument("--label-source", default="last_folder")
    e.add_argument("--work-dir", help="where the preprocessed samples go")
    r = sub.add_parser("predict", help="classify image files, or find the objects in them")
    r.add_argument("model")
    r.add_argument("images", nargs="+")
    r.add_argument("--top-k", type=_number(int, 1), default=3)
    if not argv:
        p.print_help(sys.stderr)
        return 2
    args = p.parse_args(argv)
    if args.command == "train" and args.type == "segmentation" and args.data is not None and not args.class_names:
        t.error("--type segmentation with DATA needs --class-names (the names of the label ids 0, 1, ...)")
    from .errors import HError
    try:
        return {"train": train, "evaluate": evaluate, "predict": predict}[args.command](args)
    except (HError, _Usage) as err:
        print(f"opendl {args.command}: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a run or work directory that cannot be created, an unreadable file
        print(f"opendl {args.command}: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
