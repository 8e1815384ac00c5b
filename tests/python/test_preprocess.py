"""Preprocessing procedures: the DLPreprocessParam dict and its checks, preprocess_dl_samples against numpy
references of spec E.8 (normalisations, zoom, channel adaptation, label images, boxes), preprocess_dl_dataset
on a generated folder dataset, and augment_dl_samples (seeded, exact geometric ops, range checks)."""

import inspect
import math
import os

import numpy as np
import pytest

import opendl as ha
from procedure_helpers import code_of, py


def param(w=8, h=6, c=3, norm="none", model="classification", lo=[], hi=[], gen=[], ignore=[], bg=[], bgs=[]):
    return ha.create_dl_preprocess_param(model, w, h, c, lo, hi, norm, "full_domain", ignore, bg, bgs, gen)


def run(image, p, **keys):
    s = ha.from_python_dict({"image": image, **keys})
    ha.preprocess_dl_samples([s], p)
    return py(s)


def test_signatures():
    assert list(inspect.signature(ha.create_dl_preprocess_param).parameters) == [
        "dlmodel_type", "image_width", "image_height", "image_num_channels", "image_range_min", "image_range_max",
        "normalization_type", "domain_handling", "ignore_class_ids", "set_background_id", "class_ids_background",
        "gen_param"]
    assert list(inspect.signature(ha.create_dl_preprocess_param_from_model).parameters) == [
        "dlmodel_handle", "normalization_type", "domain_handling", "set_background_id", "class_ids_background",
        "gen_param"]
    assert list(inspect.signature(ha.check_dl_preprocess_param).parameters) == ["dlpreprocess_param"]
    assert list(inspect.signature(ha.preprocess_dl_samples).parameters) == ["dlsample_batch", "dlpreprocess_param"]
    assert list(inspect.signature(ha.preprocess_dl_dataset).parameters) == [
        "dldataset", "data_directory", "dlpreprocess_param", "gen_param"]
    assert list(inspect.signature(ha.augment_dl_samples).parameters) == ["dlsample_batch", "gen_param"]


# ---------------------------------------------------------------- DLPreprocessParam


def test_create_param_keys_and_defaults():
    p = py(param())
    assert p == {"model_type": ["classification"], "image_width": [8], "image_height": [6],
                 "image_num_channels": [3], "image_range_min": [-127.0], "image_range_max": [128.0],
                 "normalization_type": ["none"], "domain_handling": ["full_domain"], "ignore_class_ids": [],
                 "set_background_id": [], "class_ids_background": []}
    d = py(param(model="detection", gen={"mean_values_normalization": [1.0, 2.0, 3.0]}))
    assert d["instance_type"] == ["rectangle1"] and d["mean_values_normalization"] == [1.0, 2.0, 3.0]
    s = py(param(model="segmentation", lo=0, hi=1, ignore=[5], bg=0, bgs=[3, 4]))
    assert s["image_range_min"] == [0] and s["set_background_id"] == [0] and s["class_ids_background"] == [3, 4]


def test_create_param_from_model():
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(m, "image_dimensions", [20, 10, 1])
    p = py(ha.create_dl_preprocess_param_from_model(m, "all_channels", "full_domain", [], [], []))
    assert (p["model_type"], p["image_width"], p["image_height"], p["image_num_channels"]) == \
        (["classification"], [20], [10], [1])
    assert (p["image_range_min"], p["image_range_max"]) == ([-127.0], [128.0])
    assert p["normalization_type"] == ["all_channels"]


# create_dl_preprocess_param names itself and the parameter at fault: 1300 + its position (1312 for GenParam);
# check_dl_preprocess_param on the same dict says 1301 (its only parameter)
@pytest.mark.parametrize("kwargs,code", [
    (dict(lo=0, hi=1), 1305),                       # classification needs -127 .. 128
    (dict(norm="zscore"), 1307),
    (dict(model="ocr"), 1301),
    (dict(w=0), 1302),
    (dict(w=2 ** 40), 1302),                        # beyond HALCON's 32-bit image sizes
    (dict(ignore=[1]), 1309),                       # segmentation-only key
    (dict(gen={"colour": 1}), 1312),                 # unknown key
    (dict(model="segmentation", lo=0, hi=1, bg=0), 1311),            # background id without background classes
    (dict(model="segmentation", lo=0, hi=1, bg=0, bgs=[0]), 1311),   # not disjoint
    (dict(model="segmentation", lo=0, hi=1, ignore=[3], bg=0, bgs=[3]), 1309),
    (dict(model="segmentation", lo=-math.inf, hi=math.inf), 1305),   # the range must be finite
    (dict(model="segmentation", lo=0, hi=math.inf), 1306),
    (dict(model="segmentation", lo=math.nan, hi=1), 1305),
    (dict(gen={"deviation_values_normalization": [0.0]}), 1312),
    (dict(gen={"deviation_values_normalization": [1e-320]}), 1312),  # (x - mean) / deviation would overflow
    (dict(gen={"deviation_values_normalization": [math.inf]}), 1312),
    (dict(gen={"mean_values_normalization": [math.nan]}), 1312),
    (dict(model="detection", gen={"instance_type": "polygon"}), 1312),
])
def test_check_rejects_bad_params(kwargs, code):
    with pytest.raises(ha.HOperatorError) as e:
        param(**kwargs)
    assert e.value.error_code == code and e.value.operator_name == "create_dl_preprocess_param"


def test_check_missing_key_and_check_params_switch():
    p = ha.copy_dict(param(), [], [])
    ha.remove_dict_key(p, "domain_handling")
    assert code_of(ha.check_dl_preprocess_param, p) == 2894
    ha.set_dict_tuple(p, "check_params", 0)
    ha.check_dl_preprocess_param(p)  # validation switched off
    # preprocess_dl_samples checks the dict all the same (microseconds), so a bad value is a clear error there
    # instead of a raw exception in the resampling
    ha.set_dict_tuple(p, "domain_handling", "full_domain")
    for key, bad in (("image_width", -5), ("image_width", math.nan), ("image_range_min", "a")):
        q = ha.copy_dict(p, [], [])
        ha.set_dict_tuple(q, key, bad)
        ha.check_dl_preprocess_param(q)
        sample = ha.gen_dl_samples_from_images(np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(ha.HOperatorError) as e:
            ha.preprocess_dl_samples(sample, q)
        assert e.value.error_code == 1302 and key in str(e.value)
    q = param()
    ha.set_dict_tuple(q, "image_width", 0)
    with pytest.raises(ha.HOperatorError) as e:
        ha.check_dl_preprocess_param(q)
    assert e.value.error_code == 1301 and e.value.operator_name == "check_dl_preprocess_param"


def test_preprocess_runs_out_of_memory_with_code_6001():
    p = ha.copy_dict(param(), [], [])
    ha.set_dict_tuple(p, "image_width", 2 ** 31 - 1)
    ha.set_dict_tuple(p, "image_height", 2 ** 31 - 1)
    sample = ha.gen_dl_samples_from_images(np.full((4, 4, 3), 7, np.uint8))
    with pytest.raises(ha.HOperatorError) as e:
        ha.preprocess_dl_samples(sample, p)
    assert e.value.error_code == 6001
    np.testing.assert_array_equal(ha.get_dict_object(sample[0], "image"), 7)  # the sample is unchanged


# ---------------------------------------------------------------- preprocess_dl_samples


def test_none_normalisation_maps_bytes_to_the_range():
    img = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    out = run(img, param())["image"]
    assert out.dtype == np.float32 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, img.astype(np.float32) - 127)  # default range: v - 127, exact
    seg = run(img, param(model="segmentation", lo=0, hi=1))["image"]
    np.testing.assert_allclose(seg, img / 255.0, rtol=1e-6)
    real = np.random.default_rng(1).normal(0, 3, (6, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(real, param())["image"], real)  # other types unchanged


def test_all_channels_and_first_channel_normalisation():
    rng = np.random.default_rng(2)
    img = (rng.random((6, 8, 3)) * [10, 100, 1000] + [0, 5, -50]).astype(np.float32)
    x = img.astype(np.float64)
    m, mx = x.min(axis=(0, 1)), x.max(axis=(0, 1))
    ref = (x - m) * 255 / (mx - m) - 127
    out = run(img, param(norm="all_channels"))["image"]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)  # float32 storage of a float64 computation
    assert np.allclose(out.min(axis=(0, 1)), -127) and np.allclose(out.max(axis=(0, 1)), 128)
    m0, mx0 = x[:, :, 0].min(), x[:, :, 0].max()
    ref = (x - m0) * 255 / (mx0 - m0) - 127
    np.testing.assert_allclose(run(img, param(norm="first_channel"))["image"], ref, rtol=1e-5, atol=1e-3)
    flat = np.full((6, 8, 3), 7, np.float32)  # max == min: scale 1
    np.testing.assert_allclose(run(flat, param(norm="all_channels"))["image"], -127)


def test_constant_values_normalisation():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    ref = (img - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(run(img, param(norm="constant_values"))["image"], ref, rtol=1e-5, atol=1e-6)
    p = param(norm="constant_values", gen={"mean_values_normalization": [10.0],
                                           "deviation_values_normalization": [2.0]})
    np.testing.assert_allclose(run(img, p)["image"], (img - 10.0) / 2.0, rtol=1e-6)
    gray = img[:, :, 0]  # one channel, default three means: replicated to three channels first
    ref = (gray[:, :, None] - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375])
    np.testing.assert_allclose(run(gray, param(norm="constant_values"))["image"], ref, rtol=1e-5, atol=1e-6)


def test_channel_adaptation():
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    out = run(gray, param(c=3))["image"]
    assert out.shape == (6, 8, 3)
    for k in range(3):
        np.testing.assert_array_equal(out[:, :, k], gray - 127.0)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    out = run(rgb, param(c=1))["image"]
    assert out.shape == (6, 8)
    v = rgb.astype(np.float64) - 127
    np.testing.assert_allclose(out, 0.299 * v[:, :, 0] + 0.587 * v[:, :, 1] + 0.114 * v[:, :, 2], atol=1e-4)
    assert code_of(run, rng.integers(0, 256, (6, 8, 2), dtype=np.uint8), param(c=3)) == 1301


def test_zoom_down_is_the_area_mean_and_zoom_up_bilinear():
    rng = np.random.default_rng(5)
    big = rng.normal(0, 20, (12, 16, 3)).astype(np.float32)
    out = run(big, param(w=8, h=6))["image"]
    ref = big.astype(np.float64).reshape(6, 2, 8, 2, 3).mean(axis=(1, 3))  # halving: 2 x 2 block means
    np.testing.assert_allclose(out, ref, atol=1e-4)
    small = rng.normal(0, 20, (3, 4)).astype(np.float32)
    up = run(small, param(w=8, h=6, c=1, model="segmentation", lo=0, hi=1))["image"]
    # doubling: output pixel centre (j + 0.5) / 2 - 0.5 in input coordinates, clamped at the border

    def axis(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    r0, r1, fr = axis(3, 6)
    c0, c1, fc = axis(4, 8)
    s = small.astype(np.float64)
    ref = ((1 - fr)[:, None] * ((1 - fc) * s[r0][:, c0] + fc * s[r0][:, c1])
           + fr[:, None] * ((1 - fc) * s[r1][:, c0] + fc * s[r1][:, c1]))
    np.testing.assert_allclose(up, ref, atol=1e-4)
    # byte images are zoomed as bytes (rounded) before the range mapping
    b = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    out = run(b, param(w=8, h=6, c=1))["image"]
    ref = np.rint(b.astype(np.float64).reshape(6, 2, 8, 2).mean(axis=(1, 3))) - 127
    np.testing.assert_array_equal(out, ref)


def test_segmentation_labels_nearest_with_background_mapping():
    lab = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], np.uint8)
    img = np.zeros((2, 4), np.uint8)
    p = param(w=8, h=4, c=1, model="segmentation", lo=0, hi=1, bg=0, bgs=[5, 6])
    s = run(img, p, segmentation_image=lab)
    out = s["segmentation_image"]
    assert out.dtype == np.float32 and out.shape == (4, 8)
    ref = np.repeat(np.repeat(lab, 2, axis=0), 2, axis=1).astype(np.float32)
    ref[np.isin(ref, [5, 6])] = 0
    np.testing.assert_array_equal(out, ref)


def test_boxes_are_scaled_in_pixel_centred_coordinates():
    img = np.zeros((10, 20), np.uint8)
    p = param(w=40, h=5, c=1, model="detection")
    s = run(img, p, bbox_label_id=[1], bbox_row1=[1.5], bbox_col1=[-0.5], bbox_row2=[5.5], bbox_col2=[9.5])
    # (x + 0.5) * factor - 0.5 with factors 0.5 (rows) and 2 (columns)
    assert s["bbox_row1"] == [0.5] and s["bbox_row2"] == [2.5]
    assert s["bbox_col1"] == [-0.5] and s["bbox_col2"] == [19.5]
    r2 = run(img, param(w=40, h=20, c=1, model="detection"), bbox_label_id=[1], bbox_row=[4.5], bbox_col=[9.5],
             bbox_length1=[3.0], bbox_length2=[1.0], bbox_phi=[0.3])
    assert r2["bbox_row"] == [9.5] and r2["bbox_col"] == [19.5]
    np.testing.assert_allclose(r2["bbox_length1"] + r2["bbox_length2"] + r2["bbox_phi"], [6.0, 2.0, 0.3])
    assert code_of(run, img, p, bbox_label_id=[1], bbox_row1=[2.0], bbox_col1=[0.0], bbox_row2=[2.0],
                   bbox_col2=[3.0]) == 1301
    assert code_of(ha.preprocess_dl_samples, [ha.from_python_dict({"x": 1})], p) == 2894
    box = dict(bbox_label_id=[1], bbox_row1=[1.0], bbox_col1=[1.0], bbox_row2=[2.0], bbox_col2=[3.0])
    for change, code in (({"bbox_col2": [math.nan]}, 1301), ({"bbox_row2": [math.inf]}, 1301),
                         ({"bbox_row1": ["a"]}, 1301), ({"bbox_col2": [3.0, 4.0]}, 1301),
                         ({"bbox_label_id": [1, 2]}, 1301), ({"bbox_col2": None}, 2894)):
        keys = {k: v for k, v in {**box, **change}.items() if v is not None}
        assert code_of(run, img, p, **keys) == code, change


# ---------------------------------------------------------------- preprocess_dl_dataset


def make_dataset(root, n=3):
    rng = np.random.default_rng(6)
    for c in ("a", "b"):
        os.makedirs(os.path.join(root, c))
        for i in range(n):
            ha.write_image(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), "png", 0, os.path.join(root, c, f"{i}"))
    return ha.read_dl_dataset_classification(root, "last_folder")


def test_preprocess_dl_dataset_writes_samples_and_dataset(tmp_path):
    ds = make_dataset(str(tmp_path / "raw"))
    p = param(w=5, h=6, c=1)
    out = str(tmp_path / "prep")
    name = ha.preprocess_dl_dataset(ds, out, p, [])
    assert name == os.path.join(out, "dl_dataset.hdict")
    assert sorted(os.listdir(os.path.join(out, "samples"))) == [f"{i}_dlsample.hdict" for i in range(6)]
    d = py(ds)
    assert d["dlsample_dir"] == [os.path.join(out, "samples")]
    assert d["preprocess_param"][0] == py(p)
    assert [s["dlsample_file_name"] for s in d["samples"]] == [[f"{i}_dlsample.hdict"] for i in range(6)]
    on_disk = py(ha.read_dict(name, [], []))
    assert on_disk["samples"][4]["dlsample_file_name"] == ["4_dlsample.hdict"]
    assert on_disk["preprocess_param"] == d["preprocess_param"]
    s = py(ha.read_dl_samples(ds, [4])[0])
    raw = ha.read_image(str(tmp_path / "raw" / "b" / "1.png"))
    ref = run(raw, p)["image"]
    assert s["image"].shape == (6, 5) and s["image_label_id"] == [1] and s["image_id"] == [4]
    np.testing.assert_array_equal(s["image"], ref)
    # the directory exists now
    assert code_of(ha.preprocess_dl_dataset, ds, out, p, []) == 1302
    ha.preprocess_dl_dataset(ds, out, param(w=5, h=6, c=1, norm="constant_values"), {"overwrite_files": "true"})
    stored = py(ds)["preprocess_param"][0]
    assert (stored["image_range_min"], stored["image_range_max"]) == ([-2.0], [2.0])
    assert code_of(ha.preprocess_dl_dataset, ds, out, p, {"overwrite_files": 1, "max_weight": 5}) == 1304


def test_a_failing_preprocess_dl_dataset_leaves_the_dataset_and_the_folder_as_they_were(tmp_path):
    """A missing image at the end used to leave 5 of 6 sample files, no dl_dataset.hdict and a dataset whose
    samples named files of a half-written folder; with overwrite_files, old samples were deleted before the
    GenParam was checked."""
    raw = str(tmp_path / "raw")
    ds = make_dataset(raw)
    out = str(tmp_path / "prep")
    ha.preprocess_dl_dataset(ds, out, param(w=5, h=6, c=1), [])
    files = sorted(os.listdir(os.path.join(out, "samples")))
    before = py(ds)
    os.remove(os.path.join(raw, "b", "2.png"))  # the last sample's image
    for gen in ({"overwrite_files": "true"}, {"overwrite_files": "true", "max_weight": float("nan")}):
        with pytest.raises(ha.HOperatorError):
            ha.preprocess_dl_dataset(ds, out, param(w=4, h=4, c=1), gen)
        assert py(ds) == before
        assert sorted(os.listdir(os.path.join(out, "samples"))) == files
        assert sorted(os.listdir(out)) == ["dl_dataset.hdict", "samples"]
    fresh = make_dataset(str(tmp_path / "raw2"))
    os.remove(os.path.join(str(tmp_path / "raw2"), "b", "2.png"))
    clean = py(fresh)
    with pytest.raises(ha.HOperatorError) as e:
        ha.preprocess_dl_dataset(fresh, str(tmp_path / "new"), param(w=5, h=6, c=1), [])
    assert e.value.error_code == 5200
    assert py(fresh) == clean and not (tmp_path / "new").exists()


def test_preprocess_dl_dataset_refuses_what_it_cannot_write_before_replacing_the_samples(tmp_path):
    """A dataset holding a handle that cannot be written used to fail only after the old samples had been
    replaced by the new ones; a directory name without a UTF-8 form was refused after folders were created."""
    ds = make_dataset(str(tmp_path / "raw"))
    bad = str(tmp_path / "bad\udcff\ud800")
    assert code_of(ha.preprocess_dl_dataset, ds, bad, param(w=5, h=6, c=1), []) == 1302
    assert sorted(os.listdir(tmp_path)) == ["raw"]
    out = str(tmp_path / "prep")
    ha.preprocess_dl_dataset(ds, out, param(w=5, h=6, c=1), [])
    sample_file = os.path.join(out, "samples", "0_dlsample.hdict")
    on_disk = {f: open(os.path.join(out, f), "rb").read() for f in ("dl_dataset.hdict", sample_file)}
    ha.set_dict_tuple(ds, "extra", ha.create_dl_layer_input("image", [8, 8, 1], [], []))
    before = py(ds)
    with pytest.raises(ha.HOperatorError) as e:
        ha.preprocess_dl_dataset(ds, out, param(w=4, h=4, c=1), {"overwrite_files": "true"})
    assert e.value.error_code == 2455 and "'extra'" in str(e.value)
    assert {f: open(os.path.join(out, f), "rb").read() for f in on_disk} == on_disk
    assert sorted(os.listdir(out)) == ["dl_dataset.hdict", "samples"]
    assert py(ds).keys() == before.keys() and py(ds)["dlsample_dir"] == before["dlsample_dir"]


# ---------------------------------------------------------------- augment_dl_samples


def batch(n=8, shape=(6, 6, 3), seed=7):
    rng = np.random.default_rng(seed)
    return [ha.from_python_dict({"image": rng.normal(0, 30, shape).astype(np.float32), "image_label_id": 0})
            for _ in range(n)]


def images(b):
    return [py(s)["image"] for s in b]


def test_augment_is_reproducible_with_the_seed():
    params = {"augmentation_percentage": 70, "mirror": "rc", "rotate": 90, "brightness_variation": 20,
              "crop_percentage": 60, "rotate_range": 10, "contrast_variation": 0.2, "brightness_variation_spot": 30}
    a, b = batch(), batch()
    ha.set_system("seed_rand", 5)
    ha.augment_dl_samples(a, params)
    ha.set_system("seed_rand", 5)
    ha.augment_dl_samples(b, params)
    for x, y in zip(images(a), images(b)):
        np.testing.assert_array_equal(x, y)
    changed = sum(not np.array_equal(x, y) for x, y in zip(images(a), images(batch())))
    assert 1 <= changed <= 8


def test_augment_geometry_is_exact():
    orig = images(batch(2))
    b = batch(2)
    ha.augment_dl_samples(b, {"augmentation_percentage": 100, "mirror": "r"})
    for x, y in zip(images(b), orig):
        np.testing.assert_array_equal(x, y[::-1])
    b = batch(2)
    ha.augment_dl_samples(b, {"augmentation_percentage": 100, "rotate": 180})
    for x, y in zip(images(b), orig):
        np.testing.assert_array_equal(x, y[::-1, ::-1])
    b = batch(2)
    ha.augment_dl_samples(b, {"augmentation_percentage": 100, "brightness_variation": 10})
    for x, y in zip(images(b), orig):
        d = x.astype(np.float64) - y
        assert np.ptp(d) < 1e-4 and abs(d.mean()) <= 10  # one offset for the whole image
    b = batch(2)
    ha.augment_dl_samples(b, {"augmentation_percentage": 0, "mirror": "c"})
    ha.augment_dl_samples(b, [])
    for x, y in zip(images(b), orig):
        np.testing.assert_array_equal(x, y)


def test_augment_moves_boxes_and_labels_with_the_image():
    img = np.zeros((4, 6), np.float32)
    img[0, 0] = 1
    lab = np.zeros((4, 6), np.float32)
    lab[0, 0] = 2
    s = ha.from_python_dict({"image": img, "segmentation_image": lab, "bbox_label_id": [1], "bbox_row1": [0.0],
                             "bbox_col1": [0.0], "bbox_row2": [1.0], "bbox_col2": [2.0]})
    ha.augment_dl_samples([s], {"augmentation_percentage": 100, "mirror": "c"})
    d = py(s)
    assert d["image"][0, 5] == 1 and d["segmentation_image"][0, 5] == 2
    assert (d["bbox_col1"], d["bbox_col2"]) == ([3.0], [5.0])  # col -> 5 - col
    # rotate 90 on a non-square image: only 180 degrees are possible
    ha.augment_dl_samples([s], {"augmentation_percentage": 100, "rotate": 90})
    d = py(s)
    assert d["image"].shape == (4, 6) and d["image"][3, 0] == 1
    assert (d["bbox_row1"], d["bbox_row2"], d["bbox_col1"], d["bbox_col2"]) == ([2.0], [3.0], [0.0], [2.0])


@pytest.mark.parametrize("params", [
    {"augmentation_percentage": 101}, {"rotate": 45}, {"mirror": "x"}, {"brightness_variation": 300},
    {"crop_percentage": 0}, {"rotate_range": 200}, {"flip": 1},
])
def test_augment_rejects_out_of_range_values(params):
    assert code_of(ha.augment_dl_samples, batch(1), params) == 1302


def test_augment_crop_only_for_classification_and_needs_samples():
    s = ha.from_python_dict({"image": np.zeros((4, 4), np.float32), "bbox_row1": [0.0]})
    assert code_of(ha.augment_dl_samples, [s], {"crop_percentage": 50}) == 1302
    assert code_of(ha.augment_dl_samples, [], {"mirror": "r"}) == 1401


def test_a_bad_sample_leaves_the_whole_batch_as_it_was():
    """preprocess_dl_samples and augment_dl_samples used to change the samples before the bad one; a 1-D image,
    a 1-D label image or a non-number box escaped as numpy errors."""
    p = param(w=4, h=4, c=1)
    good = np.arange(36, dtype=np.uint8).reshape(6, 6)
    cases = [({"image": np.zeros((8, 8, 2), np.uint8)}, None),
             ({"image": good.copy(), "segmentation_image": np.zeros(5, np.uint8)}, "'segmentation_image'")]
    for bad, words in cases:
        b = [{"image": good.copy()}, bad]
        with pytest.raises(ha.HOperatorError) as e:
            ha.preprocess_dl_samples(b, p)
        assert e.value.error_code == 1301 and (words is None or words in str(e.value)), str(e.value)
        np.testing.assert_array_equal(b[0]["image"], good)
    for bad in ({"x": 1}, {"image": np.zeros(5)}):
        b = [{"image": good.copy()}, bad]
        with pytest.raises(ha.HOperatorError) as e:
            ha.augment_dl_samples(b, {"mirror": "c", "augmentation_percentage": 100})
        assert e.value.error_code in (1301, 2894)
        np.testing.assert_array_equal(b[0]["image"], good)
    for gen in ({"crop_pixel": 1.5}, {"crop_pixel": float("inf")}, {"rotate_range": 0.5},
                {"class_ids_no_orientation": [1.7]}, {"class_ids_no_orientation": ["a"]}):
        with pytest.raises(ha.HOperatorError) as e:
            ha.augment_dl_samples([{"image": good.copy()}], gen)
        assert e.value.error_code == 1302 and next(iter(gen)) in str(e.value)


def test_set_system_checks_every_pair_before_applying_any():
    ha.set_system("seed_rand", 7)
    with pytest.raises(ha.HOperatorError) as e:
        ha.set_system(["seed_rand", "thread_num"], [12345, "x"])
    assert e.value.error_code == 1302 and "thread_num" in str(e.value)
    assert ha.get_system("seed_rand") == [7]
    ha.set_system("seed_rand", np.int64(5))
    assert ha.get_system("seed_rand") == [5]
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_system([["seed_rand"]])
    assert e.value.error_code == 1201
    threads = ha.get_system("thread_num")
    for n in (0, 1025, 100000, 2 ** 31 - 1):  # 100000 was accepted, and the next operator crashed the process
        with pytest.raises(ha.HOperatorError) as e:
            ha.set_system("thread_num", n)
        assert e.value.error_code == 1302 and "[1, 1024]" in str(e.value)
    assert ha.get_system("thread_num") == threads


# ---------------------------------------------------------------- what a numerics audit found (audit 7)


def seg_dataset(root, lab, names):
    os.makedirs(os.path.join(root, "img"))
    os.makedirs(os.path.join(root, "seg"))
    ha.write_image(np.full(lab.shape, 77, np.uint8), "png", 0, os.path.join(root, "img", "a"))
    ha.write_image(lab, "png", 0, os.path.join(root, "seg", "a"))
    return ha.read_dl_dataset_segmentation(os.path.join(root, "img"), os.path.join(root, "seg"), names,
                                           list(range(len(names))), [], [], [])


def weights_by_class(ds):
    s = py(ha.read_dl_samples(ds, [0])[0])
    seg, w = s["segmentation_image"], s["weight_image"]
    return {int(c): sorted(set(w[seg == c].tolist())) for c in np.unique(seg)}


def test_segmentation_class_weights_count_the_labels_the_model_sees(tmp_path):
    """Pixels were counted in the raw label files, before class_ids_background became set_background_id: two
    classes of 100 pixels each got weights 6.67 and 0.67. Explicit class_weights put weight on ignore classes."""
    lab = np.zeros((10, 20), np.uint8)
    lab[:, 10:] = 1   # 100 px
    lab[:, :9] = 2    # 90 px, merged into class 0 (10 px of its own)
    ds = seg_dataset(str(tmp_path / "raw"), lab, ["bg", "one", "two"])
    p = param(w=20, h=10, c=1, model="segmentation", lo=-127, hi=128, bg=[0], bgs=[2])
    ha.preprocess_dl_dataset(ds, str(tmp_path / "prep"), p, [])
    # N / (K n_c) with N = 200 counted pixels, K = 3 classes, n = 100 for both classes present
    assert weights_by_class(ds) == {0: [pytest.approx(200 / 300)], 1: [pytest.approx(200 / 300)]}
    ignore = param(w=20, h=10, c=1, model="segmentation", lo=-127, hi=128, ignore=[2])
    for given in ([1.5], [1.0, 2.0, 3.0]):
        ha.preprocess_dl_dataset(ds, str(tmp_path / "prep"), ignore, {"class_weights": given,
                                                                      "overwrite_files": "true"})
        w = weights_by_class(ds)
        assert w[2] == [0.0] and w[1] == [given[-2] if len(given) > 1 else 1.5]


def test_label_images_must_have_the_size_of_the_image():
    # a 10 x 20 label image of a 10 x 10 image was zoomed to the target, moving half the labels off their pixels
    p = param(w=8, h=8, c=1, model="segmentation", lo=0, hi=1)
    for key in ("segmentation_image", "weight_image"):
        e = code_of(run, np.zeros((10, 10), np.uint8), p, **{key: np.zeros((10, 20), np.uint8)})
        assert e == 1301, key


def test_the_dataset_preprocess_param_of_constant_values_preprocesses_further_images(tmp_path):
    """preprocess_dl_dataset stores the range -2 .. 2 for 'constant_values' (spec C.1); opendl's own checks then
    refused that stored param for classification."""
    ds = make_dataset(str(tmp_path / "raw"))
    ha.preprocess_dl_dataset(ds, str(tmp_path / "prep"), param(w=5, h=6, c=1, norm="constant_values"), [])
    stored = ha.get_dict_tuple(ds, "preprocess_param")[0]
    ha.check_dl_preprocess_param(stored)
    image = np.arange(60, dtype=np.uint8).reshape(6, 10)
    np.testing.assert_array_equal(run(image, stored)["image"],
                                  run(image, param(w=5, h=6, c=1, norm="constant_values"))["image"])
    # other normalisations still need the byte range for classification
    assert code_of(ha.create_dl_preprocess_param, "classification", 5, 6, 1, -2, 2, "none", "full_domain", [], [],
                   [], []) == 1305


def parallelogram_fit(a, b, phi, l1, l2):
    """How a rectangle2 (phi, l1, l2) stands for the parallelogram of half-axes a, b ((x, y) vectors): its
    area, its longer half-axis and the heading must be kept."""
    direction = np.array([math.cos(phi), -math.sin(phi)])  # phi counter-clockwise, rows point down
    assert 4 * l1 * l2 == pytest.approx(4 * abs(a[0] * b[1] - a[1] * b[0]))
    longer = a if np.hypot(*a) >= np.hypot(*b) else b
    assert max(l1, l2) == pytest.approx(np.hypot(*longer))
    # the longer half-axis lies along one side of the rectangle, and phi points to the side a points to
    side = direction if longer is a else np.array([-direction[1], direction[0]])
    assert abs(side @ longer) == pytest.approx(np.hypot(*longer))
    assert direction @ a > 0


@pytest.mark.parametrize("l1, l2", [(5.0, 50.0), (50.0, 5.0), (4.0, 4.5)])
def test_rectangle2_scaled_unequally_keeps_its_long_side(l1, l2):
    """The box was anchored on the length1 axis: with length1 < length2 and a 720 x 1280 -> 512 x 512 resize its
    long side turned 35 degrees away from the object (IoU 0.11 with the scaled box)."""
    img = np.zeros((720, 1280), np.uint8)
    phi = math.radians(45)
    s = run(img, param(w=512, h=512, c=1, model="detection", gen={"instance_type": "rectangle2"}),
            bbox_label_id=[1], bbox_row=[300.0], bbox_col=[600.0], bbox_phi=[phi], bbox_length1=[l1],
            bbox_length2=[l2])
    fr, fc = 512 / 720, 512 / 1280
    a = np.array([math.cos(phi) * l1 * fc, -math.sin(phi) * l1 * fr])
    b = np.array([-math.sin(phi) * l2 * fc, -math.cos(phi) * l2 * fr])
    parallelogram_fit(a, b, s["bbox_phi"][0], s["bbox_length1"][0], s["bbox_length2"][0])


def test_the_tool_augmentation_keeps_the_long_side_of_sheared_boxes():
    from opendl.tools import DataAugmentation
    aug = DataAugmentation(shear=30)
    boxes = {"bbox_label_id": [0], "bbox_row": [16.0], "bbox_col": [16.0], "bbox_phi": [0.0],
             "bbox_length1": [2.0], "bbox_length2": [10.0]}
    for seed in range(10):
        u = np.random.default_rng(seed).random(16)
        fwd = aug._forward(32, 32, u)[0]
        _, out = aug.apply(np.zeros((32, 32), np.float32), np.random.default_rng(seed), -127, 128, boxes=boxes)
        if out["bbox_label_id"]:
            a, b = fwd @ np.array([2.0, 0.0]), fwd @ np.array([0.0, 10.0])
            parallelogram_fit(a, b, out["bbox_phi"][0], out["bbox_length1"][0], out["bbox_length2"][0])


def box_sample(phi, label=0):
    return {"image": np.zeros((10, 10), np.float32), "bbox_row": [4.0], "bbox_col": [4.0], "bbox_phi": [phi],
            "bbox_length1": [3.0], "bbox_length2": [1.0], "bbox_label_id": [label]}


def test_boxes_without_a_heading_keep_phi_in_half_a_turn():
    """'ignore_direction' and 'class_ids_no_orientation' were accepted and had no effect."""
    for gen, phi0, heading, no_heading in (({"mirror": "c"}, 0.3, math.pi - 0.3, -0.3),
                                           ({"rotate": 180}, 1.2, 1.2 - math.pi, 1.2),
                                           ({"mirror": "r"}, math.pi / 2, -math.pi / 2, math.pi / 2)):
        for key, value, label in (("ignore_direction", "false", 0), ("ignore_direction", "true", 0),
                                  ("class_ids_no_orientation", [2], 2), ("class_ids_no_orientation", [2], 0)):
            s = box_sample(phi0, label)
            ha.augment_dl_samples([s], {**gen, "augmentation_percentage": 100, key: value})
            folded = value == "true" or label == 2
            assert s["bbox_phi"][0] == pytest.approx(no_heading if folded else heading), (gen, key, value, label)
    s = box_sample(math.pi / 2)
    ha.augment_dl_samples([s], {"rotate": 90, "augmentation_percentage": 100, "ignore_direction": "false"})
    assert -math.pi < s["bbox_phi"][0] <= math.pi  # (-pi, pi], never -pi


def test_rotate_range_turns_counter_clockwise():
    from opendl.preprocess import _rotate_free
    img = np.zeros((9, 9), np.float32)
    img[4, 8] = 1.0  # right of the centre
    np.testing.assert_allclose(_rotate_free(img, 90), np.rot90(img), atol=1e-12)  # np.rot90: counter-clockwise
    np.testing.assert_allclose(_rotate_free(img, -90), np.rot90(img, -1), atol=1e-12)


def test_saturation_variation_scales_the_colour_around_each_pixels_grey():
    rng = np.random.default_rng(3)
    colour = rng.uniform(0, 200, (6, 7, 3)).astype(np.float32)
    grey = colour.astype(np.float64).mean(axis=2, keepdims=True)
    b = [ha.from_python_dict({"image": colour.copy(), "image_label_id": 0}) for _ in range(6)]
    ha.set_system("seed_rand", 11)
    ha.augment_dl_samples(b, {"saturation_variation": 0.5, "augmentation_percentage": 100})
    factors = []
    for s in b:
        out = py(s)["image"].astype(np.float64)
        np.testing.assert_allclose(out.mean(axis=2, keepdims=True), grey, rtol=1e-5)  # the grey value stays
        f = (out - grey) / (colour - grey)  # one factor per sample, in [0.5, 1.5]
        assert 0.5 - 1e-4 <= f.min() and f.max() <= 1.5 + 1e-4 and np.ptp(f) < 1e-3
        factors.append(f.mean())
    assert np.ptp(factors) > 0.05  # drawn per sample
    gray = ha.from_python_dict({"image": colour[:, :, 0].copy(), "image_label_id": 0})
    ha.augment_dl_samples([gray], {"saturation_variation": 0.5, "augmentation_percentage": 100})
    np.testing.assert_array_equal(py(gray)["image"], colour[:, :, 0])
    assert code_of(ha.augment_dl_samples, b, {"saturation_variation": 1.5}) == 1302
