"""HALCON's dataset procedures (spec D.1, D.2): the readers that build a DLDataset dict from folders of images
(read_dl_dataset_classification, _segmentation, _anomaly, _from_coco), split_dl_dataset, find_dl_samples, and
the DLSample builders and files (gen_dl_samples, gen_dl_samples_from_images, read_dl_samples, write_dl_samples).

A DLDataset is a dict handle with the keys of spec C.1 (image_dir, class_names, class_ids, samples, and per
model type segmentation_dir / anomaly_dir); each sample is a dict handle (image_id, image_file_name, split,
image_label_id / bbox_* / segmentation_file_name / anomaly_label(_file_name), dlsample_file_name). Procedures
change the dataset in place, as HALCON's do. Plain Python dicts are accepted where a dict handle is expected
and are changed in place too (values are then stored as HALCON tuples, i.e. lists).

Decisions where the spec leaves the behaviour open:
- Listing: image files are the files with an extension read_image knows (.png, .jpg, .jpeg, .bmp, .tif, .tiff,
  .gif, .pbm, .pgm, .ppm, .pnm, .pcx, .ras, .xwd, .jp2, .webp; any case), sorted by their path relative to the
  listed directory ('/' separated); hidden files and folders (leading '.') are skipped. image_ids are 0..n-1 in
  that order.
- read_dl_dataset_classification lists each folder recursively. With one folder, image_dir is that folder and
  image_file_name the relative path; with several, image_dir is '' and image_file_name the full path. Labels:
  'last_folder' = name of the folder holding the file, 'file_name' = file name without extension,
  'file_name_remove_index' = that name without trailing digits and then without trailing '_', '-', '.' or
  blanks ('apple_01.png' -> 'apple'). class_names are the sorted unique labels, class_ids 0..n-1.
- read_dl_dataset_segmentation / _anomaly: with image_list [] the image directory is listed (segmentation: only
  its top level unless GenParam 'image_sub_dirs' is true; anomaly: recursively, since the labels come from the
  folder names, unless 'image_sub_dirs' is false); likewise the label directory ('segmentation_sub_dirs',
  'anomaly_sub_dirs'). Explicit lists are relative to their directory; two explicit lists of equal length are
  paired in order. Otherwise an image is matched to the label file with the same relative path without
  extension, else the same file name without extension (when that name is unique among the images and
  among the label files). An image without label file
  raises 1305 for segmentation unless 'ignore_unmatched_images' is true (the image is then left out); for
  anomaly detection the ground-truth file is optional. anomaly_label is 'ok' when the image's folder is named
  'ok' or 'good' (any case), else 'nok'; class_names ['ok', 'nok'], class_ids [0, 1].
- read_dl_dataset_from_coco reads boxes only (rectangle1). COCO boxes [x, y, w, h] have their corner at pixel
  edges; HALCON's pixel-centred rows and columns are row1 = y - 0.5, col1 = x - 0.5, row2 = row1 + h,
  col2 = col1 + w. Crowd annotations (iscrowd 1) and boxes without area are left out; images without
  annotations are kept with empty box tuples. class_ids are the COCO category ids in ascending order. A
  malformed entry raises 5238 naming it: a missing or non-integer id, a duplicate image or category id, a
  duplicate category name, an annotation whose image or category is not listed, a bbox that is not four finite
  numbers.
- read_dl_dataset_segmentation: class ids are the pixel values of the label images, so they lie in [0, 65535]
  (8- or 16-bit label images); class names and ids must be unique.
- split_dl_dataset: within every group the samples are shuffled with the procedures' random source (seeded by
  set_system('seed_rand', ...)) and the first round(n * training_percent / 100) go to 'train', up to
  round(n * (training_percent + validation_percent) / 100) to 'validation', the rest to 'test' (halves round
  up). Groups: classification = the image_label_id; detection = the rarest class (fewest boxes in the dataset)
  among the image's boxes, images without boxes forming one group; anomaly detection = the 'ok' samples, while
  every 'nok' sample goes to 'test' (spec D.2); segmentation and anything else = one group (the label images are
  not read). The model type is GenParam 'model_type' or deduced from the sample keys. A dataset whose samples
  already carry 'split' raises 1301 unless GenParam 'overwrite_split' is true.
- gen_dl_samples reads a single-channel label from the first channel of a multi-channel label image. It stores
  what the dataset holds (no preprocessing); anomaly_label_id is 1 for 'nok', else 0.
- write_dl_samples creates dlsample_dir when it does not exist.
Error codes: see opendl._proc.
"""

from __future__ import annotations

import json
import math
import os
import sys
from fractions import Fraction

import numpy as np

from ._convert import as_list
from ._handles import HHandle
from ._proc import (content, flag, gen_params, get, get1, is_int, is_number, name_value_params, new_dict, put,
                    require, rng, samples_of)
from .dicts import IMAGE_DTYPES, read_dict, write_dict
from .errors import H_ERR_DICT_KEY, H_ERR_FNF, H_ERR_WFF, HOperatorError
from .images import read_image

__all__ = ["find_dl_samples", "gen_dl_samples", "gen_dl_samples_from_images", "read_dl_dataset_anomaly",
           "read_dl_dataset_classification", "read_dl_dataset_from_coco", "read_dl_dataset_segmentation",
           "read_dl_samples", "split_dl_dataset", "write_dl_samples"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".pbm", ".pgm", ".ppm", ".pnm",
                    ".pcx", ".ras", ".xwd", ".jp2", ".webp")
MODEL_TYPES = ("anomaly_detection", "classification", "detection", "segmentation")
RESTRICT_KEYS = ("anomaly_detection", "detection", "segmentation", "classification", "image_only", "off")
RECT1_KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")
RECT2_KEYS = ("bbox_row", "bbox_col", "bbox_length1", "bbox_length2", "bbox_phi")


# ---------------------------------------------------------------- files and folders


def _one_string(value, op: str, code: int, what: str) -> str:
    items = as_list(value)
    if len(items) != 1 or not isinstance(items[0], (str, os.PathLike)):
        raise HOperatorError(code, f"{what} must be one string, got {value!r}", op)
    return os.fspath(items[0])


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _list_images(directory: str, recursive: bool, op: str, code: int) -> list:
    """Image files below ``directory`` as sorted '/'-separated relative paths."""
    if not os.path.isdir(directory):
        raise HOperatorError(H_ERR_FNF, f"directory {directory!r} not found", op)
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        rel = os.path.relpath(root, directory)
        for f in files:
            if not f.startswith(".") and _is_image(f):
                out.append(f if rel == "." else os.path.join(rel, f).replace(os.sep, "/"))
    return sorted(out)


def _join(directory: str, name: str) -> str:
    return name if directory == "" else os.path.join(directory, name)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _label(path: str, source: str) -> str:
    if source == "last_folder":
        return os.path.basename(os.path.dirname(os.path.abspath(path)))
    stem = _stem(path)
    if source == "file_name":
        return stem
    trimmed = stem.rstrip("0123456789").rstrip("_-. ")
    return trimmed or stem


def _dataset(items: dict, samples: list) -> HHandle:
    ds = new_dict(items)
    content(ds, "", "")["samples"] = [new_dict(s) for s in samples]
    return ds


# ---------------------------------------------------------------- readers


def read_dl_dataset_classification(raw_image_folder, label_source):
    """Builds a classification DLDataset from one or several folders of images (listed recursively), the label
    taken from the folder or file name as ``label_source`` says."""
    op = "read_dl_dataset_classification"
    folders = as_list(raw_image_folder)
    if not all(isinstance(f, (str, os.PathLike)) for f in folders):
        raise HOperatorError(1201, f"raw_image_folder must hold folder names (strings), got {raw_image_folder!r}",
                             op)
    folders = [os.fspath(f) for f in folders]
    if not folders or not all(isinstance(f, str) and f for f in folders):
        raise HOperatorError(1301, f"raw_image_folder must hold one or more folder names, got {raw_image_folder!r}",
                             op)
    source = _one_string(label_source, op, 1202, "label_source")
    if source not in ("last_folder", "file_name", "file_name_remove_index"):
        raise HOperatorError(1302, f"label_source {source!r} is not one of 'last_folder', 'file_name', "
                                   "'file_name_remove_index'", op)
    files = []
    for folder in folders:
        folder = folder.rstrip("/\\") or folder
        for rel in _list_images(folder, True, op, 1301):
            files.append((folder, rel))
    if not files:
        raise HOperatorError(1301, f"no image files found in {', '.join(map(repr, folders))}", op)
    single = len(folders) == 1
    image_dir = files[0][0] if single else ""
    names = [rel if single else os.path.join(folder, rel) for folder, rel in files]
    labels = [_label(os.path.join(folder, rel), source) for folder, rel in files]
    class_names = sorted(set(labels))
    ids = {n: i for i, n in enumerate(class_names)}
    samples = [{"image_id": i, "image_file_name": n, "image_label_id": ids[lab]}
               for i, (n, lab) in enumerate(zip(names, labels))]
    return _dataset({"image_dir": image_dir, "class_names": class_names,
                     "class_ids": list(range(len(class_names)))}, samples)


def _match(images: list, labels: list, what: str):
    """Pairs each image with the label file of the same relative path (then file name) without extension;
    None where there is none."""
    by_path = {os.path.splitext(p)[0]: p for p in labels}
    by_stem = {}
    for p in labels:
        by_stem.setdefault(_stem(p), []).append(p)
    image_stems: dict = {}
    for img in images:
        image_stems[_stem(img)] = image_stems.get(_stem(img), 0) + 1
    out = []
    for img in images:
        hit = by_path.get(os.path.splitext(img)[0])
        if hit is None and len(by_stem.get(_stem(img), [])) == 1 and image_stems[_stem(img)] == 1:
            hit = by_stem[_stem(img)][0]
        out.append(hit)
    return out


def _file_list(value, directory: str, recursive: bool, op: str, pos: int, what: str) -> list:
    items = as_list(value)
    if not items:
        return _list_images(directory, recursive, op, 1300 + pos)
    if not all(isinstance(i, str) and i for i in items):
        raise HOperatorError(1200 + pos, f"{what} must hold file names, got {value!r}", op)
    for i in items:
        if not os.path.isfile(_join(directory, i)):
            raise HOperatorError(H_ERR_FNF, f"{what}: file {_join(directory, i)!r} not found", op)
    return list(items)


def _class_table(class_names, class_ids, op: str, pos: int):
    names, ids = as_list(class_names), as_list(class_ids)
    if not names or len(names) != len(ids):
        raise HOperatorError(1400 + pos + 1, f"class_names holds {len(names)} names and class_ids {len(ids)} ids; "
                                             "give one id per name", op)
    if not all(isinstance(n, str) for n in names):
        raise HOperatorError(1200 + pos, f"class_names must hold strings, got {class_names!r}", op)
    if len(set(names)) != len(names):
        raise HOperatorError(1300 + pos, f"class_names must be unique, got {class_names!r}", op)
    if not all(is_int(i) and 0 <= i <= 65535 for i in ids) or len(set(ids)) != len(ids):
        raise HOperatorError(1300 + pos + 1, f"class_ids must be unique integers in [0, 65535] (the pixel values of "
                                             f"8- or 16-bit label images), got {class_ids!r}", op)
    return names, [int(i) for i in ids]


def read_dl_dataset_segmentation(image_dir, segmentation_dir, class_names, class_ids, image_list,
                                 segmentation_list, gen_param):
    """Builds a segmentation DLDataset: every image paired with its label image (pixel value = class id)."""
    op = "read_dl_dataset_segmentation"
    params = gen_params(gen_param, op, 7, ("image_sub_dirs", "segmentation_sub_dirs", "ignore_unmatched_images"))
    img_dir = _one_string(image_dir, op, 1201, "image_dir")
    seg_dir = _one_string(segmentation_dir, op, 1202, "segmentation_dir")
    names, ids = _class_table(class_names, class_ids, op, 3)
    sub_img = flag(params.get("image_sub_dirs", 0), op, 1307, "'image_sub_dirs'")
    sub_seg = flag(params.get("segmentation_sub_dirs", 0), op, 1307, "'segmentation_sub_dirs'")
    ignore = flag(params.get("ignore_unmatched_images", 0), op, 1307, "'ignore_unmatched_images'")
    images = _file_list(image_list, img_dir, sub_img, op, 5, "image_list")
    labels = _file_list(segmentation_list, seg_dir, sub_seg, op, 6, "segmentation_list")
    if as_list(image_list) and as_list(segmentation_list):
        if len(images) != len(labels):
            raise HOperatorError(1406, f"image_list holds {len(images)} files but segmentation_list "
                                       f"{len(labels)}", op)
        pairs = list(zip(images, labels))
    else:
        pairs = list(zip(images, _match(images, labels, "segmentation")))
    samples = []
    for img, lab in pairs:
        if lab is None:
            if ignore:
                continue
            raise HOperatorError(1305, f"no label image in {seg_dir!r} for image {img!r} (set "
                                       "'ignore_unmatched_images' to leave such images out)", op)
        samples.append({"image_id": len(samples), "image_file_name": img, "segmentation_file_name": lab})
    if not samples:
        raise HOperatorError(1301, f"no images found in {img_dir!r}", op)
    return _dataset({"image_dir": img_dir, "segmentation_dir": seg_dir, "class_names": names, "class_ids": ids},
                    samples)


def read_dl_dataset_anomaly(image_dir, anomaly_dir, image_list, anomaly_list, gen_param):
    """Builds an anomaly-detection DLDataset; the label of an image comes from its folder name ('ok'/'good' ->
    'ok', else 'nok'), an optional ground-truth image from ``anomaly_dir`` ([] for none)."""
    op = "read_dl_dataset_anomaly"
    params = gen_params(gen_param, op, 5, ("image_sub_dirs", "anomaly_sub_dirs"))
    img_dir = _one_string(image_dir, op, 1201, "image_dir")
    gt_items = as_list(anomaly_dir)
    if len(gt_items) > 1 or (gt_items and not isinstance(gt_items[0], (str, os.PathLike))):
        raise HOperatorError(1202, f"anomaly_dir must be one directory name or [], got {anomaly_dir!r}", op)
    gt_dir = os.fspath(gt_items[0]) if gt_items else ""
    sub_img = flag(params.get("image_sub_dirs", 1), op, 1305, "'image_sub_dirs'")
    sub_gt = flag(params.get("anomaly_sub_dirs", 1), op, 1305, "'anomaly_sub_dirs'")
    images = _file_list(image_list, img_dir, sub_img, op, 3, "image_list")
    if not images:
        raise HOperatorError(1301, f"no images found in {img_dir!r}", op)
    if gt_dir:
        gts = _file_list(anomaly_list, gt_dir, sub_gt, op, 4, "anomaly_list")
        if as_list(image_list) and as_list(anomaly_list):
            if len(images) != len(gts):
                raise HOperatorError(1404, f"image_list holds {len(images)} files but anomaly_list {len(gts)}", op)
            matched = gts
        else:
            matched = _match(images, gts, "anomaly")
    elif as_list(anomaly_list):
        raise HOperatorError(1304, "anomaly_list needs anomaly_dir", op)
    else:
        matched = [None] * len(images)
    samples = []
    for i, (img, gt) in enumerate(zip(images, matched)):
        folder = os.path.basename(os.path.dirname(os.path.abspath(_join(img_dir, img))))
        s = {"image_id": i, "image_file_name": img,
             "anomaly_label": "ok" if folder.lower() in ("ok", "good") else "nok"}
        if gt is not None:
            s["anomaly_file_name"] = gt
        samples.append(s)
    items = {"image_dir": img_dir, "class_names": ["ok", "nok"], "class_ids": [0, 1]}
    if gt_dir:
        items["anomaly_dir"] = gt_dir
    return _dataset(items, samples)


def read_dl_dataset_from_coco(coco_file_name, image_dir, gen_param):
    """Builds a detection DLDataset (rectangle1 boxes) from a COCO annotation file."""
    op = "read_dl_dataset_from_coco"
    params = gen_params(gen_param, op, 3, ("read_segmentation_masks",))
    if flag(params.get("read_segmentation_masks", 0), op, 1303, "'read_segmentation_masks'"):
        raise HOperatorError(1303, "'read_segmentation_masks' is not supported yet (boxes only)", op)
    path = _one_string(coco_file_name, op, 1201, "coco_file_name")
    img_dir = _one_string(image_dir, op, 1202, "image_dir")
    if not os.path.isfile(path):
        raise HOperatorError(H_ERR_FNF, f"COCO file {path!r} not found", op)
    try:
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise HOperatorError(H_ERR_WFF, f"{path!r} is no COCO annotation file: {e}", op) from None
    except RecursionError:  # Python's parser recurses per nesting level
        raise HOperatorError(H_ERR_WFF, f"{path!r} is no COCO annotation file: its JSON is nested too deeply",
                             op) from None
    categories, images, boxes = _coco_entries(coco, path, op)
    samples = [{"image_id": i, "image_file_name": name,
                "bbox_label_id": [v[0] for v in boxes[i]], "bbox_row1": [v[1] for v in boxes[i]],
                "bbox_col1": [v[2] for v in boxes[i]], "bbox_row2": [v[3] for v in boxes[i]],
                "bbox_col2": [v[4] for v in boxes[i]]} for i, name in images]
    return _dataset({"image_dir": img_dir, "class_names": [n for _, n in categories],
                     "class_ids": [i for i, _ in categories]}, samples)


def _coco_entries(coco, path: str, op: str):
    """Checks a parsed COCO file and returns (sorted [(category id, name)], [(image id, file name)],
    {image id: [(category id, row1, col1, row2, col2)]}); any malformed entry raises 5238 naming it. Ids are
    64-bit integers (category ids, the class ids, >= 0 as models take them), annotation ids unique."""
    def bad(what: str):
        raise HOperatorError(H_ERR_WFF, f"{path!r} is no valid COCO annotation file: {what}", op)

    def entries(key: str, required: bool) -> list:
        if key not in coco:
            if required:
                bad(f"it has no {key!r} list")
            return []
        v = coco[key]
        if not isinstance(v, list) or not all(isinstance(e, dict) for e in v):
            bad(f"{key!r} must be a list of objects")
        return v

    def integer(entry: dict, key: str, where: str, low: int = -2 ** 63) -> int:
        v = entry.get(key)
        if not is_int(v) or not low <= v < 2 ** 63:
            bad(f"{where} needs an integer {key!r} in [{'-2^63' if low else 0}, 2^63), got {v!r}")
        return int(v)

    def listed(section: str, singular: str, text_key: str) -> dict:
        """{id: text} of the entries of a section, each with an integer id (unique) and a non-empty string."""
        out = {}
        for k, e in enumerate(entries(section, True)):
            eid = integer(e, "id", f"{section}[{k}]", 0 if section == "categories" else -2 ** 63)
            if not isinstance(e.get(text_key), str) or not e[text_key]:
                bad(f"{section}[{k}] (id {eid}) needs a non-empty string {text_key!r}, got {e.get(text_key)!r}")
            if eid in out:
                bad(f"{singular} id {eid} appears twice")
            out[eid] = e[text_key]
        return out

    if not isinstance(coco, dict):
        bad("it holds no JSON object")
    categories = listed("categories", "category", "name")
    if len(set(categories.values())) != len(categories):
        bad(f"category names must be unique, got {sorted(categories.values())}")
    images = list(listed("images", "image", "file_name").items())
    boxes: dict = {iid: [] for iid, _ in images}
    annotation_ids: set = set()
    for k, a in enumerate(entries("annotations", False)):
        where = f"annotations[{k}]" + (f" (id {a['id']!r})" if "id" in a else "")
        if "id" in a:  # optional here; when given, unique (a repeated annotation would add its box twice)
            aid = integer(a, "id", where)
            if aid in annotation_ids:
                bad(f"annotation id {aid} appears twice (again in annotations[{k}])")
            annotation_ids.add(aid)
        iid = integer(a, "image_id", where)
        cid = integer(a, "category_id", where)
        if iid not in boxes:
            bad(f"{where} refers to image id {iid}, which 'images' does not list")
        if cid not in categories:
            bad(f"{where} refers to category id {cid}, which 'categories' does not list")
        bbox = a.get("bbox")
        # abs(v) <= the largest float: NaN and inf fail, and ints of any size compare (math.isfinite overflows)
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) and abs(v) <= sys.float_info.max
                                                                  for v in bbox)):
            bad(f"{where} needs a 'bbox' of four finite numbers [x, y, width, height], got {bbox!r}")
        crowd = a.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float):
            bad(f"{where} has 'iscrowd' {crowd!r}; it must be 0 or 1")
        x, y, w, h = (float(v) for v in bbox)
        if crowd or w <= 0 or h <= 0:
            continue
        corners = (y - 0.5, x - 0.5, y - 0.5 + h, x - 0.5 + w)
        if not all(math.isfinite(c) for c in corners):  # finite numbers whose sums overflow ([1e308] * 4)
            bad(f"{where} has a 'bbox' {bbox!r} whose corners are not finite numbers")
        boxes[iid].append((cid,) + corners)
    return sorted(categories.items()), images, boxes


# ---------------------------------------------------------------- split and search


def _model_type_of(samples: list) -> str:
    keys = set()
    for s in samples:
        keys.update(s.keys())
    if "image_label_id" in keys:
        return "classification"
    if "anomaly_label" in keys:
        return "anomaly_detection"
    if "bbox_label_id" in keys:
        return "detection"
    if "segmentation_file_name" in keys:
        return "segmentation"
    return "other"


def _round_half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def _percent(value, op: str, pos: int, what: str) -> Fraction:
    items = as_list(value)
    if len(items) != 1 or not is_number(items[0]):
        raise HOperatorError(1200 + pos, f"{what} must be one number, got {value!r}", op)
    v = items[0]
    if not (0 <= v <= 100) or (isinstance(v, float) and not math.isfinite(v)):
        raise HOperatorError(1300 + pos, f"{what} must lie in [0, 100], got {v!r}", op)
    return Fraction(v).limit_denominator(10 ** 6)


def split_dl_dataset(dldataset, training_percent, validation_percent, gen_param):
    """Sets 'split' ('train', 'validation', 'test') on every sample, class-balanced (module notes)."""
    op = "split_dl_dataset"
    ds = content(dldataset, op, "dldataset")
    tp = _percent(training_percent, op, 2, "training_percent")
    vp = _percent(validation_percent, op, 3, "validation_percent")
    if tp + vp > 100:
        raise HOperatorError(1303, f"training_percent + validation_percent = {float(tp + vp):g} exceeds 100", op)
    params = gen_params(gen_param, op, 4, ("overwrite_split", "model_type"))
    overwrite = flag(params.get("overwrite_split", 0), op, 1304, "'overwrite_split'")
    samples = samples_of(ds, op)
    if not samples:
        raise HOperatorError(1301, "dldataset holds no samples", op)
    if not overwrite and any("split" in s for s in samples):
        raise HOperatorError(1301, "the dataset is already split; set GenParam 'overwrite_split' to true to split "
                                   "it again", op)
    model_type = params.get("model_type", [_model_type_of(samples)])
    if len(model_type) != 1 or not isinstance(model_type[0], str) or model_type[0] not in MODEL_TYPES + ("other",):
        raise HOperatorError(1304, f"GenParam 'model_type' must be one of {', '.join(map(repr, MODEL_TYPES))}, "
                                   f"got {model_type!r}", op)
    model_type = model_type[0]
    groups: dict = {}
    forced_test = []
    if model_type == "classification":
        for i, s in enumerate(samples):
            label = get1(s, "image_label_id")
            if label is None:
                raise HOperatorError(H_ERR_DICT_KEY, f"sample {i} has no 'image_label_id'", op)
            if not (is_int(label) or isinstance(label, str)) or len(get(s, "image_label_id")) != 1:
                raise HOperatorError(1301, f"sample {i} has image_label_id {get(s, 'image_label_id')!r}; it must "
                                           "be one class id", op)
            groups.setdefault(label, []).append(i)
    elif model_type == "detection":
        counts: dict = {}
        for i, s in enumerate(samples):
            labels = get(s, "bbox_label_id", [])
            if not all(is_int(c) for c in labels):
                raise HOperatorError(1301, f"sample {i} has bbox_label_id {labels!r}; it must hold class ids "
                                           "(integers)", op)
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
        for i, s in enumerate(samples):
            present = set(get(s, "bbox_label_id", []))
            key = min(present, key=lambda c: (counts[c], c)) if present else None
            groups.setdefault(key, []).append(i)
    elif model_type == "anomaly_detection":
        for i, s in enumerate(samples):
            if get1(s, "anomaly_label", "ok") == "ok":
                groups.setdefault("ok", []).append(i)
            else:
                forced_test.append(i)
    else:
        groups[0] = list(range(len(samples)))
    split = [None] * len(samples)
    gen = rng()
    for key in sorted(groups, key=lambda k: (k is None, str(type(k)), k if k is not None else 0)):
        idx = groups[key]
        order = [idx[j] for j in gen.permutation(len(idx))]
        n_train = _round_half_up(len(idx) * tp / 100)
        n_trval = _round_half_up(len(idx) * (tp + vp) / 100)
        for rank, i in enumerate(order):
            split[i] = "train" if rank < n_train else "validation" if rank < n_trval else "test"
    for i in forced_test:
        split[i] = "test"
    for s, sp in zip(samples, split):
        put(s, "split", sp)


def _same(a, b) -> bool:
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def find_dl_samples(samples, key_name, key_value, mode):
    """Indices of the samples whose tuple under ``key_name`` matches ``key_value``: 'match' (the same tuple),
    'or' (a one-element tuple equal to one of the values), 'contain' (holding one of the values). Samples
    without the key never match."""
    op = "find_dl_samples"
    items = [samples] if isinstance(samples, (dict, HHandle)) else as_list(samples)
    key = as_list(key_name)
    if len(key) != 1 or not isinstance(key[0], (str, int)):
        raise HOperatorError(1202, f"key_name must be one key, got {key_name!r}", op)
    key = key[0]
    values = as_list(key_value)
    m = _one_string(mode, op, 1204, "mode")
    if m not in ("match", "or", "contain"):
        raise HOperatorError(1304, f"mode {m!r} is not one of 'match', 'or', 'contain'", op)
    out = []
    for i, s in enumerate(items):
        d = content(s, op, f"samples[{i}]")
        if key not in d:
            continue
        t = get(d, key)
        if isinstance(t, np.ndarray):
            continue
        if m == "match":
            hit = len(t) == len(values) and all(_same(a, b) for a, b in zip(t, values))
        elif m == "or":
            hit = len(t) == 1 and any(_same(t[0], v) for v in values)
        else:
            hit = any(_same(a, v) for a in t for v in values)
        if hit:
            out.append(i)
    return out


# ---------------------------------------------------------------- samples


def _indices(sample_indices, n: int, op: str, pos: int) -> list:
    out = []
    for i in as_list(sample_indices):
        if not is_int(i):
            raise HOperatorError(1200 + pos, f"sample_indices must hold integers, got {i!r}", op)
        if not 0 <= i < n:
            raise HOperatorError(1300 + pos, f"sample index {int(i)} is outside 0..{n - 1}", op)
        out.append(int(i))
    return out


def _read_label_image(path: str, op: str) -> np.ndarray:
    img = read_image(path)
    return np.ascontiguousarray(img[:, :, 0]) if img.ndim == 3 else img


def _dir_of(ds: dict, key: str, op: str) -> str:
    """The directory under ``key`` of a dataset ('' when absent); anything but one string raises 1301."""
    value = get(ds, key, [""])
    if len(value) != 1 or not isinstance(value[0], str):
        raise HOperatorError(1301, f"dldataset {key!r} must be one directory name, got {value!r}", op)
    return value[0]


def _file_of(sample: dict, key: str, i: int, op: str) -> str:
    """The file name under ``key`` of dataset sample ``i``; a missing key raises 2894, anything but one
    non-empty string 1301."""
    value = get(sample, key)
    if value is None:
        raise HOperatorError(H_ERR_DICT_KEY, f"sample {i} has no {key!r}", op)
    if isinstance(value, np.ndarray) or len(value) != 1 or not isinstance(value[0], str) or not value[0]:
        raise HOperatorError(1301, f"sample {i} has {key} {value!r}; it must be one file name", op)
    return value[0]


def gen_dl_samples(dldataset, sample_indices, restrict_keys_dlsample, gen_param):
    """Reads the raw images (and label images) of the given samples into new DLSample dict handles, not
    preprocessed. ``restrict_keys_dlsample`` picks the keys: a model type, 'image_only' or 'off' (everything
    the dataset sample has)."""
    op = "gen_dl_samples"
    ds = content(dldataset, op, "dldataset")
    samples = samples_of(ds, op)
    indices = _indices(sample_indices, len(samples), op, 2)
    restrict = as_list(restrict_keys_dlsample)
    if len(restrict) != 1 or restrict[0] not in RESTRICT_KEYS:
        raise HOperatorError(1303, f"restrict_keys_dlsample must be one of {', '.join(map(repr, RESTRICT_KEYS))}, "
                                   f"got {restrict_keys_dlsample!r}", op)
    restrict = restrict[0]
    params = gen_params(gen_param, op, 4, ("ignore_missing_labels", "instance_type"))
    ignore = flag(params.get("ignore_missing_labels", 1 if restrict == "off" else 0), op, 1304,
                  "'ignore_missing_labels'")
    instance_type = params.get("instance_type", ["rectangle1"])
    if "instance_type" in params and restrict not in ("detection", "off"):
        raise HOperatorError(1304, "GenParam 'instance_type' needs restrict_keys_dlsample 'detection' or 'off'", op)
    if instance_type not in (["rectangle1"], ["rectangle2"]):
        raise HOperatorError(1304, f"GenParam 'instance_type' must be 'rectangle1' or 'rectangle2', got "
                                   f"{instance_type!r}", op)
    instance_type = instance_type[0]
    image_dir = _dir_of(ds, "image_dir", op)
    out = []
    for i in indices:
        s = samples[i]
        image = read_image(_join(image_dir, _file_of(s, "image_file_name", i, op)))
        sample = {"image": image}
        if "image_id" in s:
            sample["image_id"] = get(s, "image_id")

        def need(key, what=None):
            if key in s:
                return True
            if not ignore:
                raise HOperatorError(H_ERR_DICT_KEY, f"sample {i} has no {key!r}{what or ''} (set GenParam "
                                                     "'ignore_missing_labels' to skip such labels)", op)
            return False

        if restrict == "off":
            for k in s:
                if k not in sample:
                    sample[k] = s[k] if isinstance(s[k], np.ndarray) else get(s, k)
        if restrict in ("classification",) and need("image_label_id"):
            sample["image_label_id"] = get(s, "image_label_id")
        if restrict in ("detection", "off") and (restrict == "detection" or "bbox_label_id" in s):
            keys = RECT1_KEYS if instance_type == "rectangle1" else RECT2_KEYS
            if restrict == "off":
                keys = [k for k in RECT1_KEYS + RECT2_KEYS if k in s]
            if need("bbox_label_id"):
                sample["bbox_label_id"] = get(s, "bbox_label_id")
                for k in keys:
                    if need(k, f" ({instance_type} boxes)"):
                        sample[k] = get(s, k)
        if restrict in ("segmentation", "off") and (restrict == "segmentation" or "segmentation_file_name" in s):
            if need("segmentation_file_name"):
                require(ds, "segmentation_dir", op, "dldataset")
                seg_dir = _dir_of(ds, "segmentation_dir", op)
                sample["segmentation_image"] = _read_label_image(
                    _join(seg_dir, _file_of(s, "segmentation_file_name", i, op)), op)
        if restrict in ("anomaly_detection", "off") and (restrict == "anomaly_detection" or "anomaly_label" in s):
            if need("anomaly_label"):
                label = get1(s, "anomaly_label")
                sample["anomaly_label"] = label
                sample["anomaly_label_id"] = 1 if label == "nok" else 0
            if "anomaly_file_name" in s:
                gt_dir = _dir_of(ds, "anomaly_dir", op)
                sample["anomaly_ground_truth"] = _read_label_image(
                    _join(gt_dir, _file_of(s, "anomaly_file_name", i, op)), op)
        out.append(new_dict(sample))
    return out


def gen_dl_samples_from_images(images):
    """One DLSample dict handle {'image': image} per image (a numpy array or a list of them)."""
    op = "gen_dl_samples_from_images"
    items = [images] if isinstance(images, np.ndarray) else as_list(images)
    out = []
    for i, img in enumerate(items):
        if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.size == 0:
            raise HOperatorError(1201, f"images[{i}] must be an image array (height, width[, channels])", op)
        if img.dtype not in IMAGE_DTYPES:
            raise HOperatorError(1201, f"images[{i}] has dtype {img.dtype}; images are uint8, int8, int16, uint16, "
                                       "int32 or float32", op)
        out.append(new_dict({"image": img}))
    return out


def _sample_dir(ds: dict, op: str) -> str:
    d = get1(ds, "dlsample_dir")
    if d is None:
        raise HOperatorError(H_ERR_DICT_KEY, "dldataset has no 'dlsample_dir' (preprocess it with "
                                             "preprocess_dl_dataset)", op)
    return d


def read_dl_samples(dldataset, sample_indices):
    """Reads the preprocessed DLSample files <dlsample_dir>/<dlsample_file_name> of the given samples."""
    op = "read_dl_samples"
    ds = content(dldataset, op, "dldataset")
    samples = samples_of(ds, op)
    indices = _indices(sample_indices, len(samples), op, 2)
    directory = _sample_dir(ds, op)
    out = []
    for i in indices:
        name = get1(samples[i], "dlsample_file_name")
        if name is None:
            raise HOperatorError(H_ERR_DICT_KEY, f"sample {i} has no 'dlsample_file_name' (write it with "
                                                 "write_dl_samples or preprocess_dl_dataset)", op)
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise HOperatorError(H_ERR_FNF, f"DLSample file {path!r} of sample {i} not found", op)
        out.append(read_dict(path, [], []))
    return out


def write_dl_samples(dldataset, sample_indices, dlsample_batch, gen_param_name, gen_param_value):
    """Writes each DLSample to <dlsample_dir>/<image_id>_dlsample.hdict and records the file name in the
    dataset sample ('dlsample_file_name'). GenParam 'raise_error_if_content_not_serializable' goes to
    write_dict."""
    op = "write_dl_samples"
    ds = content(dldataset, op, "dldataset")
    samples = samples_of(ds, op)
    indices = _indices(sample_indices, len(samples), op, 2)
    batch = [dlsample_batch] if isinstance(dlsample_batch, (dict, HHandle)) else as_list(dlsample_batch)
    if len(batch) != len(indices):
        raise HOperatorError(1403, f"dlsample_batch holds {len(batch)} samples for {len(indices)} sample indices",
                             op)
    params = name_value_params(gen_param_name, gen_param_value, op, 4, ("raise_error_if_content_not_serializable",))
    directory = _sample_dir(ds, op)
    os.makedirs(directory, exist_ok=True)
    for i, sample in zip(indices, batch):
        s = samples[i]
        image_id = get1(s, "image_id")
        if image_id is None:
            raise HOperatorError(H_ERR_DICT_KEY, f"dataset sample {i} has no 'image_id'", op)
        own = get1(content(sample, op, "dlsample_batch", 1203), "image_id")
        if own is not None and own != image_id:
            raise HOperatorError(1303, f"the DLSample for sample index {i} has image_id {own}, the dataset sample "
                                       f"{image_id}", op)
        name = f"{image_id}_dlsample.hdict"
        write_dict(sample, os.path.join(directory, name), list(params), list(params.values()))
        put(s, "dlsample_file_name", name)
