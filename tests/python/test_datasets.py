"""Dataset procedures: the readers (classification, segmentation, anomaly, COCO) on folders generated in
tmp_path, split_dl_dataset (class balance, seeded reproducibility, overwrite rule), find_dl_samples,
gen_dl_samples / gen_dl_samples_from_images, write_dl_samples / read_dl_samples, and their error codes."""

import inspect
import json
import os

import numpy as np

import opendl as ha
from procedure_helpers import code_of, py


def make_classification(root, classes=("apple", "pear", "plum"), per_class=(10, 10, 10), size=(6, 8)):
    rng = np.random.default_rng(1)
    images = {}
    for c, n in zip(classes, per_class):
        os.makedirs(os.path.join(root, c), exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            path = os.path.join(root, c, f"{c}_{i:02d}.png")
            ha.write_image(img, "png", 0, path)
            images[f"{c}/{c}_{i:02d}.png"] = img
    return images


def test_signatures():
    sig = {f: list(inspect.signature(getattr(ha, f)).parameters) for f in (
        "read_dl_dataset_classification", "read_dl_dataset_segmentation", "read_dl_dataset_anomaly",
        "read_dl_dataset_from_coco", "split_dl_dataset", "find_dl_samples", "gen_dl_samples",
        "gen_dl_samples_from_images", "read_dl_samples", "write_dl_samples")}
    assert sig["read_dl_dataset_classification"] == ["raw_image_folder", "label_source"]
    assert sig["read_dl_dataset_segmentation"] == ["image_dir", "segmentation_dir", "class_names", "class_ids",
                                                   "image_list", "segmentation_list", "gen_param"]
    assert sig["read_dl_dataset_anomaly"] == ["image_dir", "anomaly_dir", "image_list", "anomaly_list", "gen_param"]
    assert sig["split_dl_dataset"] == ["dldataset", "training_percent", "validation_percent", "gen_param"]
    assert sig["find_dl_samples"] == ["samples", "key_name", "key_value", "mode"]
    assert sig["gen_dl_samples"] == ["dldataset", "sample_indices", "restrict_keys_dlsample", "gen_param"]
    assert sig["gen_dl_samples_from_images"] == ["images"]
    assert sig["read_dl_samples"] == ["dldataset", "sample_indices"]
    assert sig["write_dl_samples"] == ["dldataset", "sample_indices", "dlsample_batch", "gen_param_name",
                                       "gen_param_value"]


# ---------------------------------------------------------------- readers


def test_classification_reader_last_folder(tmp_path):
    make_classification(str(tmp_path / "data"), per_class=(2, 3, 1))
    ds = py(ha.read_dl_dataset_classification(str(tmp_path / "data"), "last_folder"))
    assert set(ds) == {"image_dir", "class_names", "class_ids", "samples"}
    assert ds["image_dir"] == [str(tmp_path / "data")]
    assert ds["class_names"] == ["apple", "pear", "plum"] and ds["class_ids"] == [0, 1, 2]
    s = ds["samples"]
    assert [x["image_id"] for x in s] == [[i] for i in range(6)]
    assert [x["image_file_name"][0] for x in s] == ["apple/apple_00.png", "apple/apple_01.png", "pear/pear_00.png",
                                                    "pear/pear_01.png", "pear/pear_02.png", "plum/plum_00.png"]
    assert [x["image_label_id"][0] for x in s] == [0, 0, 1, 1, 1, 2]
    assert set(s[0]) == {"image_id", "image_file_name", "image_label_id"}


def test_classification_reader_file_name_sources_and_several_folders(tmp_path):
    for d, names in (("a", ["cat_01.png", "cat_2.png", "dog-7.png"]), ("b", ["dog-8.png", "owl.png"])):
        os.makedirs(tmp_path / d)
        for n in names:
            ha.write_image(np.zeros((3, 3), np.uint8), "png", 0, str(tmp_path / d / n))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    ds = py(ha.read_dl_dataset_classification([str(tmp_path / "a"), str(tmp_path / "b")], "file_name_remove_index"))
    assert ds["image_dir"] == [""]
    assert ds["class_names"] == ["cat", "dog", "owl"]
    assert [s["image_label_id"][0] for s in ds["samples"]] == [0, 0, 1, 1, 2]
    assert ds["samples"][3]["image_file_name"] == [os.path.join(str(tmp_path / "b"), "dog-8.png")]
    ds = py(ha.read_dl_dataset_classification(str(tmp_path / "a"), "file_name"))
    assert ds["class_names"] == ["cat_01", "cat_2", "dog-7"]


def test_classification_reader_errors(tmp_path):
    assert code_of(ha.read_dl_dataset_classification, str(tmp_path / "none"), "last_folder") == 5200
    os.makedirs(tmp_path / "empty")
    assert code_of(ha.read_dl_dataset_classification, str(tmp_path / "empty"), "last_folder") == 1301
    assert code_of(ha.read_dl_dataset_classification, str(tmp_path), "folder") == 1302


def make_segmentation(root, n=4, unmatched=False):
    rng = np.random.default_rng(2)
    os.makedirs(os.path.join(root, "img"))
    os.makedirs(os.path.join(root, "lab"))
    for i in range(n):
        ha.write_image(rng.integers(0, 256, (6, 8), dtype=np.uint8), "png", 0, os.path.join(root, "img", f"s{i}.png"))
        ha.write_image(rng.integers(0, 3, (6, 8), dtype=np.uint8), "png", 0, os.path.join(root, "lab", f"s{i}.png"))
    if unmatched:
        ha.write_image(np.zeros((6, 8), np.uint8), "png", 0, os.path.join(root, "img", "lonely.png"))


def test_segmentation_reader_matches_label_images(tmp_path):
    make_segmentation(str(tmp_path), unmatched=True)
    args = (str(tmp_path / "img"), str(tmp_path / "lab"), ["bg", "a", "b"], [0, 1, 2], [], [])
    assert code_of(ha.read_dl_dataset_segmentation, *args, []) == 1305
    ds = py(ha.read_dl_dataset_segmentation(*args, {"ignore_unmatched_images": "true"}))
    assert set(ds) == {"image_dir", "segmentation_dir", "class_names", "class_ids", "samples"}
    assert ds["segmentation_dir"] == [str(tmp_path / "lab")]
    assert [(s["image_file_name"][0], s["segmentation_file_name"][0]) for s in ds["samples"]] == \
        [(f"s{i}.png", f"s{i}.png") for i in range(4)]
    assert code_of(ha.read_dl_dataset_segmentation, *args[:3], [0, 1], [], [], []) == 1404
    assert code_of(ha.read_dl_dataset_segmentation, *args, {"unknown": 1}) == 1307
    samples = ha.gen_dl_samples(ha.read_dl_dataset_segmentation(*args, {"ignore_unmatched_images": 1}), [2],
                                "segmentation", [])
    np.testing.assert_array_equal(py(samples[0])["segmentation_image"], ha.read_image(str(tmp_path / "lab" / "s2.png")))


def test_anomaly_reader_labels_from_folders_and_optional_ground_truth(tmp_path):
    for folder in ("good", "crack", "OK"):
        os.makedirs(tmp_path / "img" / folder)
        ha.write_image(np.full((4, 4), 9, np.uint8), "png", 0, str(tmp_path / "img" / folder / "x.png"))
    os.makedirs(tmp_path / "gt" / "crack")
    gt = np.array([[0, 1, 1, 0]] * 4, np.uint8)
    ha.write_image(gt, "png", 0, str(tmp_path / "gt" / "crack" / "x.png"))
    ds = py(ha.read_dl_dataset_anomaly(str(tmp_path / "img"), str(tmp_path / "gt"), [], [], []))
    assert ds["class_names"] == ["ok", "nok"] and ds["class_ids"] == [0, 1]
    assert ds["anomaly_dir"] == [str(tmp_path / "gt")]
    by_name = {s["image_file_name"][0]: s for s in ds["samples"]}
    assert by_name["good/x.png"]["anomaly_label"] == ["ok"]
    assert by_name["OK/x.png"]["anomaly_label"] == ["ok"]
    assert by_name["crack/x.png"]["anomaly_label"] == ["nok"]
    assert by_name["crack/x.png"]["anomaly_file_name"] == ["crack/x.png"]
    assert "anomaly_file_name" not in by_name["good/x.png"]
    h = ha.read_dl_dataset_anomaly(str(tmp_path / "img"), str(tmp_path / "gt"), [], [], [])
    idx = [i for i, s in enumerate(ds["samples"]) if s["anomaly_label"] == ["nok"]]
    s = py(ha.gen_dl_samples(h, idx, "anomaly_detection", [])[0])
    assert s["anomaly_label"] == ["nok"] and s["anomaly_label_id"] == [1]
    np.testing.assert_array_equal(s["anomaly_ground_truth"], gt)
    assert py(ha.read_dl_dataset_anomaly(str(tmp_path / "img"), [], [], [], []))["samples"][0].keys() == \
        {"image_id", "image_file_name", "anomaly_label"}


def test_coco_reader_converts_boxes_to_pixel_centred_rectangle1(tmp_path):
    coco = {"images": [{"id": 7, "file_name": "a.png", "width": 20, "height": 10},
                       {"id": 9, "file_name": "b.png", "width": 20, "height": 10}],
            "categories": [{"id": 3, "name": "nut"}, {"id": 1, "name": "bolt"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 4, 10, 5]},
                            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1]},
                            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    ds = py(ha.read_dl_dataset_from_coco(str(tmp_path / "c.json"), str(tmp_path), []))
    assert ds["class_ids"] == [1, 3] and ds["class_names"] == ["bolt", "nut"]
    a, b = ds["samples"]
    assert a["image_id"] == [7] and a["bbox_label_id"] == [3, 1]
    assert a["bbox_row1"] == [3.5, -0.5] and a["bbox_col1"] == [1.5, -0.5]
    assert a["bbox_row2"] == [8.5, 0.5] and a["bbox_col2"] == [11.5, 0.5]
    assert b["bbox_label_id"] == [] and b["bbox_row1"] == []
    assert code_of(ha.read_dl_dataset_from_coco, str(tmp_path / "x.json"), "", []) == 5200
    (tmp_path / "bad.json").write_text("{}")
    assert code_of(ha.read_dl_dataset_from_coco, str(tmp_path / "bad.json"), "", []) == 5238



def test_coco_reader_names_the_malformed_entry(tmp_path):
    base = {"images": [{"id": 7, "file_name": "a.png"}], "categories": [{"id": 3, "name": "nut"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 4, 10, 5]}]}

    def error(**change):
        coco = json.loads(json.dumps(base))
        for where, fix in change.items():
            fix(coco)
        (tmp_path / "c.json").write_text(json.dumps(coco))
        try:
            ha.read_dl_dataset_from_coco(str(tmp_path / "c.json"), str(tmp_path), [])
        except ha.HOperatorError as e:
            return e.error_code, str(e)
        return None

    def ann(key, value):
        return lambda c: c["annotations"][0].__setitem__(key, value)

    def drop(section, key):
        return lambda c: c[section][0].pop(key)

    assert error() is None
    for fix, words in ((ann("bbox", [1, 2, 3]), "bbox"), (ann("bbox", ["a", 1, 2, 3]), "bbox"),
                       (ann("bbox", [float("nan"), 1, 2, 3]), "finite"), (drop("annotations", "bbox"), "bbox"),
                       (drop("annotations", "image_id"), "image_id"), (ann("category_id", 9), "category id 9"),
                       (ann("image_id", 8), "image id 8"), (ann("iscrowd", 2), "iscrowd"),
                       (drop("images", "id"), "images[0]"), (drop("images", "file_name"), "file_name"),
                       (drop("categories", "name"), "name"),
                       (lambda c: c["images"].append({"id": 7, "file_name": "b.png"}), "image id 7 appears twice"),
                       (lambda c: c["categories"].append({"id": 3, "name": "bolt"}), "category id 3"),
                       (lambda c: c.__setitem__("annotations", 5), "'annotations'"),
                       (lambda c: c.pop("images"), "'images'")):
        code, message = error(x=fix)
        assert code == 5238 and words in message, message
    (tmp_path / "c.json").write_text("[1, 2]")
    assert code_of(ha.read_dl_dataset_from_coco, str(tmp_path / "c.json"), "", []) == 5238


def test_coco_reader_refuses_what_no_dataset_can_hold(tmp_path):
    """A deeply nested file raised a raw RecursionError; ids beyond 64 bits, negative category ids (no model
    takes them as class ids), boxes whose corners overflow to inf and repeated annotations were accepted."""
    base = {"images": [{"id": 7, "file_name": "a.png"}], "categories": [{"id": 3, "name": "nut"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [2, 4, 10, 5]}]}

    def error(fix=None, text=None):
        coco = json.loads(json.dumps(base))
        if fix:
            fix(coco)
        (tmp_path / "c.json").write_text(text if text is not None else json.dumps(coco))
        try:
            ha.read_dl_dataset_from_coco(str(tmp_path / "c.json"), str(tmp_path), [])
        except ha.HOperatorError as e:
            return e.error_code, e.operator_name, str(e)
        return None

    def ids(section, value, *refs):
        def fix(c):
            c[section][0]["id"] = value
            for key in refs:
                c["annotations"][0][key] = value
        return fix

    for fix, text, words in (
            (None, '{"info": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
            (ids("images", 2**70, "image_id"), None, "images[0] needs an integer 'id'"),
            (ids("images", -2**63 - 1, "image_id"), None, "images[0] needs an integer 'id'"),
            (ids("categories", 2**63, "category_id"), None, "categories[0] needs an integer 'id' in [0"),
            (ids("categories", -3, "category_id"), None, "categories[0] needs an integer 'id' in [0"),
            (ids("annotations", 2**64), None, "annotations[0]"),
            (lambda c: c["annotations"][0].__setitem__("bbox", [1e308] * 4), None, "not finite"),
            (lambda c: c["annotations"][0].__setitem__("bbox", [10**400, 1, 2, 3]), None, "finite numbers"),
            (lambda c: c["annotations"].append(dict(c["annotations"][0])), None, "annotation id 1 appears twice")):
        code, op, message = error(fix, text)
        assert (code, op) == (5238, "read_dl_dataset_from_coco") and words in message, message
    ok = error(ids("images", -2**63, "image_id"))  # the 64-bit extremes are ids
    assert ok is None, ok
    assert error(ids("categories", 2**63 - 1, "category_id")) is None
    assert error(lambda c: c["annotations"].append(dict(c["annotations"][0], id=2))) is None


def test_readers_refuse_bad_class_tables_and_names(tmp_path):
    for bad in (5, float("nan"), [str(tmp_path), None]):
        assert code_of(ha.read_dl_dataset_classification, bad, "last_folder") == 1201
    make_segmentation(str(tmp_path))
    args = (str(tmp_path / "img"), str(tmp_path / "lab"))
    assert code_of(ha.read_dl_dataset_segmentation, *args, ["bg", "bg"], [0, 1], [], [], []) == 1303
    assert code_of(ha.read_dl_dataset_segmentation, *args, ["bg", "a"], [0, 2 ** 40], [], [], []) == 1304
    assert code_of(ha.read_dl_dataset_segmentation, *args, ["bg", "a"], [0, 0], [], [], []) == 1304
    ds = ha.read_dl_dataset_segmentation(*args, ["bg", "a"], [0, 65535], [], [], [])
    sample = ha.get_dict_tuple(ds, "samples")[0]
    ha.set_dict_tuple(sample, "image_file_name", [5])
    assert code_of(ha.gen_dl_samples, ds, [0], "segmentation", []) == 1301
    ha.set_dict_tuple(sample, "image_file_name", "s0.png")
    ha.set_dict_tuple(sample, "segmentation_file_name", [])
    assert code_of(ha.gen_dl_samples, ds, [0], "segmentation", []) == 1301
    ha.set_dict_tuple(ds, "image_dir", [1, 2])
    assert code_of(ha.gen_dl_samples, ds, [1], "segmentation", []) == 1301

# ---------------------------------------------------------------- split


def splits(ds):
    return [s["split"][0] for s in py(ds)["samples"]]


def test_split_is_class_balanced_and_seeded(tmp_path):
    make_classification(str(tmp_path), per_class=(10, 20, 7))
    ds = ha.read_dl_dataset_classification(str(tmp_path), "last_folder")
    ha.set_system("seed_rand", 42)
    ha.split_dl_dataset(ds, 70, 20, [])
    got = splits(ds)
    labels = [s["image_label_id"][0] for s in py(ds)["samples"]]
    # per class: round(n * 0.7) train, round(n * 0.9) - round(n * 0.7) validation, the rest test
    for c, n in ((0, 10), (1, 20), (2, 7)):
        mine = [sp for sp, lab in zip(got, labels) if lab == c]
        assert mine.count("train") == int(n * 0.7 + 0.5)
        assert mine.count("validation") == int(n * 0.9 + 0.5) - int(n * 0.7 + 0.5)
        assert mine.count("test") == n - int(n * 0.9 + 0.5)
    # same seed, same split; another seed, another split
    ds2 = ha.read_dl_dataset_classification(str(tmp_path), "last_folder")
    ha.set_system("seed_rand", 42)
    ha.split_dl_dataset(ds2, 70, 20, [])
    assert splits(ds2) == got
    ha.set_system("seed_rand", 43)
    ha.split_dl_dataset(ds2, 70, 20, {"overwrite_split": "true"})
    assert splits(ds2) != got


def test_split_refuses_to_resplit_and_checks_percentages(tmp_path):
    make_classification(str(tmp_path), per_class=(3, 3, 3))
    ds = ha.read_dl_dataset_classification(str(tmp_path), "last_folder")
    ha.split_dl_dataset(ds, 50, 50, [])
    assert set(splits(ds)) <= {"train", "validation"}
    assert code_of(ha.split_dl_dataset, ds, 50, 20, []) == 1301
    ha.split_dl_dataset(ds, 100, 0, {"overwrite_split": 1})
    assert splits(ds) == ["train"] * 9
    assert code_of(ha.split_dl_dataset, ds, -1, 20, {"overwrite_split": 1}) == 1302
    assert code_of(ha.split_dl_dataset, ds, 50, 101, {"overwrite_split": 1}) == 1303
    assert code_of(ha.split_dl_dataset, ds, 60, 50, {"overwrite_split": 1}) == 1303
    assert code_of(ha.split_dl_dataset, ds, 60, 20, {"shuffle": 1}) == 1304
    for model_type in ([], ["detection", "classification"], "x", 3):
        assert code_of(ha.split_dl_dataset, ds, 60, 20, {"overwrite_split": 1, "model_type": model_type}) == 1304
    # labels that are no class ids (a nested list, a float) are named, not hashed
    for key, label in (("image_label_id", [[1]]), ("image_label_id", 1.5), ("bbox_label_id", [[1]])):
        bad = {"samples": [{"image_id": 0, key: label}]}
        assert code_of(ha.split_dl_dataset, bad, 60, 20, []) == 1301


def test_split_anomaly_puts_every_nok_sample_into_test():
    samples = [{"image_id": i, "image_file_name": f"{i}.png", "anomaly_label": "nok" if i % 3 == 0 else "ok"}
               for i in range(30)]
    ds = ha.from_python_dict({"image_dir": "", "class_names": ["ok", "nok"], "class_ids": [0, 1],
                              "samples": samples})
    ha.set_system("seed_rand", 1)
    ha.split_dl_dataset(ds, 50, 25, [])
    got = splits(ds)
    assert all(got[i] == "test" for i in range(0, 30, 3))
    ok = [got[i] for i in range(30) if i % 3]
    assert (ok.count("train"), ok.count("validation"), ok.count("test")) == (10, 5, 5)


def test_find_dl_samples_modes():
    samples = [ha.from_python_dict(d) for d in (
        {"split": "train", "ids": [1, 2]}, {"split": "test", "ids": [2]}, {"ids": [3]}, {"split": "train"})]
    assert ha.find_dl_samples(samples, "split", "train", "match") == [0, 3]
    assert ha.find_dl_samples(samples, "split", ["train", "test"], "or") == [0, 1, 3]
    assert ha.find_dl_samples(samples, "ids", [1, 2], "match") == [0]
    assert ha.find_dl_samples(samples, "ids", [2, 3], "or") == [1, 2]
    assert ha.find_dl_samples(samples, "ids", [2], "contain") == [0, 1]
    assert ha.find_dl_samples(samples, "missing", [2], "contain") == []
    assert code_of(ha.find_dl_samples, samples, "ids", [2], "any") == 1304


# ---------------------------------------------------------------- samples


def test_gen_dl_samples_reads_images_and_labels(tmp_path):
    images = make_classification(str(tmp_path), per_class=(2, 2, 2))
    ds = ha.read_dl_dataset_classification(str(tmp_path), "last_folder")
    out = ha.gen_dl_samples(ds, [1, 4], "classification", [])
    assert len(out) == 2
    s = py(out[1])
    assert set(s) == {"image", "image_id", "image_label_id"}
    assert s["image_id"] == [4] and s["image_label_id"] == [2]
    np.testing.assert_array_equal(s["image"], images["plum/plum_00.png"])
    assert set(py(ha.gen_dl_samples(ds, [0], "image_only", [])[0])) == {"image", "image_id"}
    ha.split_dl_dataset(ds, 50, 0, [])
    assert "split" in py(ha.gen_dl_samples(ds, [0], "off", [])[0])
    # a sample without its label: error unless ignore_missing_labels
    ha.remove_dict_key(ha.get_dict_tuple(ds, "samples")[0], "image_label_id")
    assert code_of(ha.gen_dl_samples, ds, [0], "classification", []) == 2894
    assert "image_label_id" not in py(ha.gen_dl_samples(ds, [0], "classification",
                                                        {"ignore_missing_labels": "true"})[0])
    assert code_of(ha.gen_dl_samples, ds, [6], "classification", []) == 1302
    assert code_of(ha.gen_dl_samples, ds, [0], "labels", []) == 1303
    assert code_of(ha.gen_dl_samples, ds, [0], "classification", {"instance_type": "rectangle1"}) == 1304


def test_gen_dl_samples_detection_instance_types(tmp_path):
    ha.write_image(np.zeros((5, 6), np.uint8), "png", 0, str(tmp_path / "x.png"))
    ds = ha.from_python_dict({"image_dir": str(tmp_path), "class_names": ["a"], "class_ids": [0], "samples": [
        {"image_id": 0, "image_file_name": "x.png", "bbox_label_id": [0], "bbox_row1": [1.0], "bbox_col1": [2.0],
         "bbox_row2": [3.0], "bbox_col2": [4.0], "split": "train"}]})
    s = py(ha.gen_dl_samples(ds, [0], "detection", [])[0])
    assert set(s) == {"image", "image_id", "bbox_label_id", "bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2"}
    assert s["bbox_col2"] == [4.0]
    # the dataset has no rectangle2 boxes
    assert code_of(ha.gen_dl_samples, ds, [0], "detection", {"instance_type": "rectangle2"}) == 2894
    assert code_of(ha.gen_dl_samples, ds, [0], "detection", {"instance_type": "polygon"}) == 1304


def test_gen_dl_samples_from_images():
    imgs = [np.zeros((4, 5), np.uint8), np.ones((4, 5, 3), np.float32)]
    out = ha.gen_dl_samples_from_images(imgs)
    assert [set(py(s)) for s in out] == [{"image"}, {"image"}]
    np.testing.assert_array_equal(py(out[1])["image"], imgs[1])
    assert len(ha.gen_dl_samples_from_images(imgs[0])) == 1
    assert code_of(ha.gen_dl_samples_from_images, [np.zeros((4, 5), np.float64)]) == 1201


def test_write_and_read_dl_samples(tmp_path):
    make_classification(str(tmp_path / "data"), per_class=(2, 1, 1))
    ds = ha.read_dl_dataset_classification(str(tmp_path / "data"), "last_folder")
    assert code_of(ha.write_dl_samples, ds, [0], ha.gen_dl_samples(ds, [0], "classification", []), [], []) == 2894
    ha.set_dict_tuple(ds, "dlsample_dir", str(tmp_path / "samples"))
    batch = ha.gen_dl_samples(ds, [2, 3], "classification", [])
    ha.write_dl_samples(ds, [2, 3], batch, [], [])
    assert sorted(os.listdir(tmp_path / "samples")) == ["2_dlsample.hdict", "3_dlsample.hdict"]
    d = py(ds)
    assert d["samples"][2]["dlsample_file_name"] == ["2_dlsample.hdict"]
    assert "dlsample_file_name" not in d["samples"][0]
    back = ha.read_dl_samples(ds, [3, 2])
    np.testing.assert_array_equal(py(back[0])["image"], py(batch[1])["image"])
    assert py(back[1])["image_label_id"] == py(batch[0])["image_label_id"]
    assert code_of(ha.write_dl_samples, ds, [0], batch[:1], [], []) == 1303  # image_id 2 for sample 0
    assert code_of(ha.write_dl_samples, ds, [2, 3], batch[:1], [], []) == 1403
    assert code_of(ha.read_dl_samples, ds, [0]) == 2894  # never written
    os.remove(tmp_path / "samples" / "3_dlsample.hdict")
    assert code_of(ha.read_dl_samples, ds, [3]) == 5200
