"""create_dl_train_param and train_dl_model: the whole HALCON workflow with procedure calls only, change and
serialization strategies, exact resume, early stopping, the background loader's determinism, plots, errors,
and the opendl command."""

import json
import os

import numpy as np
import pytest

import opendl as ha
from opendl import cli, demo


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A folder dataset on disk as a HALCON user has it, read, split and preprocessed by the procedures."""
    root = tmp_path_factory.mktemp("train")
    demo.write_demo_dataset(str(root / "images"), num_per_class=16, seed=3, size=32)
    ha.set_system("seed_rand", 5)
    ds = ha.read_dl_dataset_classification(str(root / "images"), "last_folder")
    ha.split_dl_dataset(ds, 70, 15, [])
    model = new_model(ds)
    pp = ha.create_dl_preprocess_param_from_model(model, "none", "full_domain", [], [], [])
    path = ha.preprocess_dl_dataset(ds, str(root / "pre"), pp, [])
    return path, root


def new_model(ds, lr=0.002):
    ha.set_system("seed_rand", 11)
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    ha.set_dl_model_param(m, "image_dimensions", [32, 32, 1])
    ha.set_dl_model_param(m, "class_names", ha.get_dict_tuple(ds, "class_names"))
    ha.set_dl_model_param(m, "class_ids", ha.get_dict_tuple(ds, "class_ids"))
    ha.set_dl_model_param(m, "batch_size", 8)
    ha.set_dl_model_param(m, "solver_type", "adam")
    ha.set_dl_model_param(m, "learning_rate", lr)
    return m


def serialize(kind, basename):
    return ha.from_python_dict({"type": kind, "basename": basename})


def test_workflow_with_procedures_only(prepared, tmp_path):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    model = new_model(ds)
    change = ha.from_python_dict({"model_param": "learning_rate", "initial_value": 0.002, "epochs": [2],
                                  "values": [0.0005]})
    tp = ha.create_dl_train_param(model, 3, 1, "false", 42, ["serialize", "change", "augment"],
                                  [[serialize("best", str(tmp_path / "best")), serialize("final", str(tmp_path / "final"))],
                                   [change], ha.from_python_dict({"augmentation_percentage": 50, "mirror": "rc"})])
    results, infos, evals = ha.train_dl_model(ds, model, tp, 0)
    n_train = sum(ha.get_dict_tuple_s(s, "split") == "train" for s in ha.get_dict_tuple(ds, "samples"))
    assert len(results) == (n_train // 8) * 3
    assert all(np.isfinite(ha.get_dict_tuple_s(r, "total_loss")) for r in results)
    assert len(evals) == 3  # one evaluation per epoch
    ev = ha.as_python_dict(evals[-1])
    assert ev["epoch"] == [3.0] and ev["iteration"] == [len(results) - 1]
    assert ha.get_dl_model_param_s(model, "learning_rate") == 0.0005  # the change strategy ran
    info = ha.as_python_dict(infos[-1])
    for key in ("epoch", "num_epochs", "num_iterations_per_epoch", "model_params", "mean_loss", "time_elapsed",
                "best_evaluation_value", "data_samples_per_second", "data_wait_seconds"):
        assert key in info, key
    for base in ("best", "final"):
        assert os.path.isfile(tmp_path / f"{base}.hdl")
        saved = ha.as_python_dict(ha.read_dict(str(tmp_path / f"{base}_info.hdict"), [], []))
        assert {"train_infos", "evaluation_infos", "epoch"} <= set(saved)
    best = ha.read_dl_model(str(tmp_path / "best.hdl"))
    result, params = ha.evaluate_dl_model(ds, best, "split", "test", [])
    res = ha.as_python_dict(result)
    err = ha.get_dict_tuple_s(ha.get_dict_tuple_s(result, "global"), "top1_error")
    assert 0 <= err <= 1 and "evaluated_samples" in res
    # The best file holds the best validation value seen.
    values = [ha.get_dict_tuple_s(ha.get_dict_tuple_s(ha.get_dict_tuple_s(e, "result"), "global"), "top1_error")
              for e in evals]
    assert info["best_evaluation_value"] == [min(values)]


def test_loss_decreases_on_the_demo_data(prepared):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    model = new_model(ds)
    tp = ha.create_dl_train_param(model, 6, 0, "false", 1, [], [])
    results, _, evals = ha.train_dl_model(ds, model, tp, 0)
    loss = [ha.get_dict_tuple_s(r, "total_loss") for r in results]
    assert evals == []  # evaluation_interval_epochs 0: no evaluation
    assert np.mean(loss[-5:]) < 0.6 * np.mean(loss[:5])


def test_resume_continues_exactly(prepared, tmp_path):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    aug = ha.from_python_dict({"augmentation_percentage": 60, "mirror": "rc", "brightness_variation": 10})
    straight = new_model(ds)
    tp = ha.create_dl_train_param(straight, 4, 0, "false", 7, ["augment", "serialize"],
                                  [aug, [serialize("final", str(tmp_path / "a"))]])
    full, _, _ = ha.train_dl_model(ds, straight, tp, 0)
    first = new_model(ds)
    current = str(tmp_path / "current")
    tp2 = ha.create_dl_train_param(first, 2, 0, "false", 7, ["augment", "serialize"], [aug, [serialize("current", current)]])
    part1, _, _ = ha.train_dl_model(ds, first, tp2, 0)
    assert ha.get_dict_tuple_s(ha.read_dict(current + "_info.hdict", [], []), "epoch") == 2.0
    resumed = ha.read_dl_model(current + ".hdl")
    tp3 = ha.create_dl_train_param(resumed, 4, 0, "false", 7, ["augment", "serialize"], [aug, [serialize("current", current)]])
    part2, infos, _ = ha.train_dl_model(ds, resumed, tp3, "resume")
    loss = lambda rs: [ha.get_dict_tuple_s(r, "total_loss") for r in rs]  # noqa: E731
    assert loss(part1) + loss(part2) == loss(full)
    assert bytes(ha.serialize_dl_model(resumed).core("t")) == bytes(ha.serialize_dl_model(straight).core("t"))


def test_resume_a_run_that_evaluated(prepared, tmp_path):
    """Resuming reads the saved EvaluationInfos back (each 'result' a nested dict) to know the best value so far;
    a run that had evaluated could not be resumed at all (AttributeError). It continues as the straight run."""
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    loss = lambda rs: [ha.get_dict_tuple_s(r, "total_loss") for r in rs]  # noqa: E731
    straight = new_model(ds)
    full, _, full_evals = ha.train_dl_model(ds, straight, ha.create_dl_train_param(
        straight, 2, 1, "false", 5, ["serialize"], [[serialize("best", str(tmp_path / "b1"))]]), 0)
    current = str(tmp_path / "current")
    first = new_model(ds)
    part1, _, _ = ha.train_dl_model(ds, first, ha.create_dl_train_param(
        first, 1, 1, "false", 5, ["serialize"], [[serialize("current", current)]]), 0)
    resumed = ha.read_dl_model(current + ".hdl")
    part2, infos, evals = ha.train_dl_model(ds, resumed, ha.create_dl_train_param(
        resumed, 2, 1, "false", 5, ["serialize"], [[serialize("current", current)]]), "resume")
    assert loss(part1) + loss(part2) == loss(full)
    assert len(evals) == len(full_evals) == 2
    best = [ha.get_dict_tuple_s(i, "best_evaluation_value") for i in infos if
            "best_evaluation_value" in ha.get_dict_param(i, "keys", [])][-1]
    errors = [ha.get_dict_tuple_s(ha.get_dict_tuple(ha.get_dict_tuple(e, "result")[0], "global")[0], "top1_error")
              for e in evals]
    assert best == min(errors)  # the first run's evaluation counts


def test_resume_refuses_a_damaged_info_file(prepared, tmp_path):
    """The 'current' strategy's <basename>_info.hdict is read and checked before anything trains: a hand-edited
    or damaged epoch or info list raises 5238 naming the key (before: ValueError, OverflowError, IndexError, or a
    silent restart at epoch 0), an epoch beyond num_epochs 1304; the model stays as it was."""
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    current = str(tmp_path / "current")
    m = new_model(ds)
    tp = ha.create_dl_train_param(m, 1, 0, "false", 5, ["serialize"], [[serialize("current", current)]])
    ha.train_dl_model(ds, m, tp, 0)
    good = ha.as_python_dict(ha.read_dict(current + "_info.hdict", [], []))
    before = bytes(ha.serialize_dl_model(m).core("t"))
    for edit, code, words in [({"epoch": ["x"]}, 5238, "'epoch'"), ({"epoch": [float("nan")]}, 5238, "'epoch'"),
                              ({"epoch": [-5.0]}, 5238, "'epoch'"), ({"epoch": []}, 5238, "'epoch'"),
                              ({"train_infos": [1, 2]}, 5238, "'train_infos'"),
                              ({"evaluation_infos": [{"result": {}}]}, 5238, "'evaluation_infos'"),
                              ({"epoch": [100.0]}, 1304, "num_epochs")]:
        ha.write_dict(ha.from_python_dict(dict(good, **edit)), current + "_info.hdict", [], [])
        with pytest.raises(ha.HOperatorError) as e:
            ha.train_dl_model(ds, m, tp, "resume")
        assert e.value.error_code == code and words in str(e.value), (edit, str(e.value))
    assert bytes(ha.serialize_dl_model(m).core("t")) == before


def test_unwritable_serialization_folders_are_refused_before_training(prepared, tmp_path, monkeypatch):
    """A basename or plot_dir under a file used to pass create_dl_train_param and fail with a raw OSError after
    the whole training; a snapshot whose info file cannot be written left a .hdl without its _info.hdict. Now
    the folders are checked up front, and a snapshot is written as a pair or not at all (3142)."""
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    m = new_model(ds)
    (tmp_path / "afile").write_text("x")
    for name, value, words in [("serialize", [serialize("final", str(tmp_path / "afile" / "model"))], "is a file"),
                               ("display", ha.from_python_dict({"plot_dir": str(tmp_path / "afile" / "p")}),
                                "plot_dir")]:
        with pytest.raises(ha.HOperatorError) as e:
            ha.create_dl_train_param(m, 1, 0, "false", 1, [name], [value])
        assert e.value.error_code == 1307 and words in str(e.value), str(e.value)
    from opendl import training

    def failing_write_dict(*args):
        raise ha.HOperatorError(3142, "disk full", "write_dict")
    monkeypatch.setattr(training, "write_dict", failing_write_dict)
    tp = ha.create_dl_train_param(m, 1, 0, "false", 1, ["serialize"], [[serialize("final", str(tmp_path / "f"))]])
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model(ds, m, tp, 0)
    assert e.value.error_code == 3142 and e.value.operator_name == "train_dl_model" and "disk full" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["afile"]  # neither f.hdl nor a temporary file


def test_comparison_keys_point_one_way_and_tuples_count_by_their_mean(prepared):
    """Classification keys never mix an error (lower is better) with a precision (higher is better): their mean
    ranked a perfect and a useless model alike (0.5). A per-class tuple key (class_iou) counts by its mean, as in
    HALCON's reduce_dl_evaluation_result; it used to be dropped, leaving -1 at every evaluation."""
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    m = new_model(ds)
    tp = ha.create_dl_train_param(m, 1, 1, "false", 1, ["evaluate"],
                                  [ha.from_python_dict({"measures": ["top1_error", "precision"]})])
    assert ha.get_dict_tuple(tp, "evaluation_comparison_keys") == ["mean_precision"]
    assert ha.get_dict_tuple(tp, "evaluation_comparison_keys_best_highest") == [1]
    value, keys = ha.reduce_dl_evaluation_result(ha.from_python_dict({"class_iou": [0.2, 0.4, 0.9],
                                                                      "mean_iou": 0.5}), ["class_iou"])
    assert value == pytest.approx(0.5) and keys == ["class_iou"]


def test_data_workers_do_not_change_results(prepared):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    runs = []
    for workers in (0, 3):
        m = new_model(ds)
        tp = ha.create_dl_train_param(m, 1, 0, "false", 9, ["augment", "data_loader"], [
            ha.from_python_dict({"augmentation_percentage": 100, "mirror": "rc", "rotate": 90}),
            ha.from_python_dict({"num_data_workers": workers, "prefetch_batches": 2})])
        runs.append([ha.get_dict_tuple_s(r, "total_loss") for r in ha.train_dl_model(ds, m, tp, 0)[0]])
    assert runs[0] == runs[1]


def test_early_stopping_stops_and_restores_the_best_weights(prepared, tmp_path):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    model = new_model(ds)
    # min_delta 2 cannot be reached by a top-1 error: only the first evaluation counts as an improvement.
    tp = ha.create_dl_train_param(model, 10, 0.5, "false", 3, ["early_stopping", "serialize"], [
        ha.from_python_dict({"patience": 2, "min_delta": 2.0}), [serialize("best", str(tmp_path / "best"))]])
    results, infos, evals = ha.train_dl_model(ds, model, tp, 0)
    ipe = ha.get_dict_tuple_s(infos[-1], "num_iterations_per_epoch")
    assert len(evals) == 3 and len(results) == 3 * (ipe // 2)
    last = ha.as_python_dict(infos[-1])
    assert last["stopped_early"] == [1] and last["best_epoch"] == [ha.get_dict_tuple_s(evals[0], "epoch")]
    best = ha.read_dl_model(str(tmp_path / "best.hdl"))
    for layer in ("conv_1", "class_scores"):
        assert np.array_equal(ha.get_dl_model_layer_weights(model, layer, "weights"),
                              ha.get_dl_model_layer_weights(best, layer, "weights"))


def test_display_writes_plots(prepared, tmp_path):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    model = new_model(ds)
    tp = ha.create_dl_train_param(model, 1, 1, "true", 1, ["display", "evaluate", "serialize"], [
        ha.from_python_dict({"plot_dir": str(tmp_path)}),
        ha.from_python_dict({"measures": ["top1_error", "absolute_confusion_matrix"]}),
        [serialize("best", str(tmp_path / "best"))]])
    ha.train_dl_model(ds, model, tp, 0)
    for name in ("training_progress.png", "confusion_matrix.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_train_param_errors(prepared):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    m = new_model(ds)
    cases = [
        ((m, 0, 1, "false", 1, [], []), 1302),
        ((m, 2, -1, "false", 1, [], []), 1303),
        ((m, 2, 1, "maybe", 1, [], []), 1304),
        ((m, 2, 1, "false", 1, ["schedule"], [1]), 1306),
        ((m, 2, 1, "false", 1, ["serialize", "change"], [1]), 1407),
        ((m, 2, 1, "false", 1, ["serialize"], [serialize("sometimes", "x")]), 1307),
        ((m, 2, 1, "false", 1, ["change"], [ha.from_python_dict({"model_param": "learning_rate", "initial_value": 1,
                                                                  "epochs": [1, 2], "values": [1]})]), 1307),
        ((m, 2, 1, "false", 1, ["early_stopping"], [ha.from_python_dict({"patience": 0})]), 1307),
        ((m, 2, 1, "false", 1, ["display"], [ha.from_python_dict({"colour": "red"})]), 1307),
    ]
    for args, code in cases:
        with pytest.raises(ha.HOperatorError) as e:
            ha.create_dl_train_param(*args)
        assert e.value.error_code == code, (args, e.value)


def test_every_train_param_value_is_checked_before_training(prepared):
    """A bad value anywhere in the train parameters is refused by create_dl_train_param, and a hand-edited one by
    train_dl_model before its first step: before, a bad evaluation measure or change-strategy value surfaced
    only after the first epoch had changed the model, and non-numbers escaped as Python ValueErrors."""
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    m = new_model(ds)
    before = bytes(ha.serialize_dl_model(m).core("t"))
    d = ha.from_python_dict
    nan, inf = float("nan"), float("inf")

    def change(**kw):
        return d(dict({"model_param": "learning_rate", "initial_value": 0.01, "epochs": [1], "values": [0.001]}, **kw))
    cases = [  # (gen_param_name, gen_param_value, words the message names)
        ("data_loader", d({"num_data_workers": "x"}), "num_data_workers"),
        ("data_loader", d({"num_data_workers": 1.5}), "num_data_workers"),
        ("data_loader", d({"prefetch_batches": nan}), "prefetch_batches"),
        ("data_loader", d({"threads": 2}), "'threads'"),
        ("serialize", [d({"type": "epochs", "epochs": ["x"]})], "'epochs'"),
        ("serialize", [d({"type": "best", "basename": 5})], "'basename'"),
        ("serialize", [d({"type": "best", "basename": ""})], "'basename'"),
        ("early_stopping", d({"patience": 2, "min_delta": nan}), "min_delta"),
        ("change", [change(model_param="lr")], "'lr'"),
        ("change", [change(initial_value=nan)], "finite"),
        ("change", [change(values=[-0.1])], "> 0"),
        ("change", [change(model_param="momentum", values=[1.5])], "momentum"),
        ("change", [change(model_param="solver_type", initial_value="sgd", values=["rmsprop"])], "solver_type"),
        ("change", [change(epochs=["x"])], "'epochs'"),
        ("change", [change(scale_momentum_threshold="x")], "scale_momentum_threshold"),
        ("change", [change(foo=1)], "'foo'"),
        ("evaluate", d({"measures": ["mean_ap"]}), "mean_ap"),
        ("evaluate", d({"measure": ["top1_error"]}), "'measure'"),
        ("augment", d({"rotation": 90}), "'rotation'"),
        ("augment", d({"mirror": "x"}), "mirror"),
        ("display", d({"selected_percentage_train_samples": "x"}), "selected_percentage_train_samples"),
        ("augment", 5, "dict"),
        # the batch stream and the preprocessed image size are fixed for a run: before, these failed halfway
        ("change", [change(model_param="batch_size", initial_value=8, values=[4])], "'batch_size'"),
        ("change", [change(model_param="image_width", initial_value=32, values=[24])], "'image_width'"),
        ("serialize", [d({"type": ["best", "final"]})], "one value"),  # 'final' was dropped silently
        ("display", d({"x_axis_label": "furlongs"}), "x_axis_label"),
        ("display", d({"randomize_images": "maybe"}), "randomize_images"),
        ("display", d({"status_model_params": [5]}), "status_model_params"),
        # a measure set without a number to compare: 'best' and early stopping would never react
        ("evaluate", d({"measures": ["absolute_confusion_matrix"]}), "no number to compare"),
    ]
    for name, value, words in cases:
        with pytest.raises(ha.HOperatorError) as e:
            ha.create_dl_train_param(m, 2, 1, "false", 1, [name], [value])
        assert e.value.error_code == 1307 and words in str(e.value), (name, str(e.value))
    with pytest.raises(ha.HOperatorError) as e:  # the TrainParam dict holds the seed as int64
        ha.create_dl_train_param(m, 2, 1, "false", 2 ** 63, [], [])
    assert e.value.error_code == 1305
    for ne, ei, code in ((nan, 1, 1302), (inf, 1, 1302), (2, nan, 1303), (2, inf, 1303)):
        with pytest.raises(ha.HOperatorError) as e:
            ha.create_dl_train_param(m, ne, ei, "false", 1, [], [])
        assert e.value.error_code == code
    # The strategies' values were checked on the model, which stays as it was (learning rate included).
    assert ha.get_dl_model_param_s(m, "learning_rate") == pytest.approx(0.002)

    good = ha.as_python_dict(ha.create_dl_train_param(m, 1, 1, "false", 1, [], []))
    edits = [{"num_epochs": [nan]}, {"num_samples_mean_loss": ["x"]}, {"seed_rand": [-1]},
             {"evaluation_param": {"measures": ["foo"]}}, {"augmentation_param": {"foo": 1}},
             {"change_strategies": [{"model_param": ["lr"], "initial_value": [1], "epochs": [0.5], "values": [0.1]}]},
             {"data_loader": {"num_data_workers": [-1]}}, {"unknown_key": [1]}]
    for edit in edits:
        with pytest.raises(ha.HOperatorError) as e:
            ha.train_dl_model(ds, m, d(dict(good, **edit)), 0)
        assert e.value.error_code == 1303 and e.value.operator_name == "train_dl_model", (edit, str(e.value))
    assert bytes(ha.serialize_dl_model(m).core("t")) == before


def test_a_huge_num_epochs_draws_only_the_epochs_it_reaches(prepared, tmp_path):
    """The batch stream is drawn epoch by epoch as training reaches it: num_epochs 1e9 with early stopping used
    to allocate ceil(num_epochs) shuffles up front; its first epoch equals a one-epoch run's."""
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    runs = []
    for ne in (1, 1e9):
        m = new_model(ds)
        tp = ha.create_dl_train_param(m, ne, 1, "false", 4, ["early_stopping", "serialize"],
                                      [ha.from_python_dict({"patience": 1, "min_delta": 1.0}),
                                       [serialize("final", str(tmp_path / "final"))]])
        results, infos, evals = ha.train_dl_model(ds, m, tp, 0)
        runs.append([ha.get_dict_tuple_s(r, "total_loss") for r in results])
    assert len(runs[1]) == 2 * len(runs[0])  # patience 1, nothing counts as better: stops after 2 evaluations
    assert runs[1][:len(runs[0])] == runs[0]


def test_train_dl_model_errors(prepared, tmp_path):
    path, _ = prepared
    ds = ha.read_dict(path, [], [])
    m = new_model(ds)
    tp = ha.create_dl_train_param(m, 2, 1, "false", 1, [], [])
    raw = ha.read_dl_dataset_classification(str(prepared[1] / "images"), "last_folder")
    ha.split_dl_dataset(raw, 70, 15, [])
    before = bytes(ha.serialize_dl_model(m).core("t"))
    for args, code in [((raw, m, tp, 0), 1301),        # not preprocessed
                       ((ds, m, tp, 5), 1304),         # start epoch beyond num_epochs
                       ((ds, m, tp, "later"), 1304),
                       ((ds, m, tp, "resume"), 1304),  # no 'current' strategy
                       ((ds, m, 5, 0), 1203)]:
        with pytest.raises(ha.HOperatorError) as e:
            ha.train_dl_model(*args)
        assert e.value.error_code == code, (args[3], e.value)
    assert bytes(ha.serialize_dl_model(m).core("t")) == before
    ha.set_dl_model_param(m, "batch_size", 64)  # more than the train split holds
    with pytest.raises(ha.HOperatorError) as e:
        ha.train_dl_model(ds, m, tp, 0)
    assert e.value.error_code == 1301 and "batch_size" in str(e.value)


def test_opendl_command_trains_evaluates_and_predicts(tmp_path, capsys):
    run = tmp_path / "run"
    rc = cli.main(["train", "--run-dir", str(run), "--demo-images", "48", "--epochs", "2", "--batch-size", "8",
                   "--image-size", "32", "--quiet"])
    assert rc == 0
    for name in ("model_best.hdl", "model_final.hdl", "evaluation.json", "summary.txt", "confusion_matrix.png"):
        assert os.path.isfile(run / name), name
    out = capsys.readouterr().out
    assert "top1_error" in out and "samples/s" in out
    rc = cli.main(["evaluate", str(run / "model_best.hdl"), str(run / "demo_data"), "--work-dir", str(tmp_path / "ev")])
    assert rc == 0 and "48 images: top1_error" in capsys.readouterr().out
    image = str(run / "demo_data" / "notch" / "notch_0000.png")
    assert cli.main(["predict", str(run / "model_best.hdl"), image]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(image + ": ") and len(line.split(",")) == 3


def test_opendl_command_reports_bad_arguments_without_a_traceback(tmp_path, capsys):
    """Each used to end in a Python traceback (IndexError, FileExistsError, AttributeError) or, for a run
    without validation, in 'model_best.hdl not found' after the whole training."""
    small = ["--demo-images", "16", "--image-size", "32", "--batch-size", "2", "--quiet"]
    assert cli.main([]) == 2 and "train" in capsys.readouterr().err  # the usage names the commands
    for argv in (["predict", "m.hdl", "a.png", "--top-k", "0"], ["train", "--demo-images", "-4"],
                 ["train", "--epochs", "nan"], ["train", str(tmp_path), "--type", "segmentation"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2, argv
        assert "error:" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert cli.main(["train", *small, "--run-dir", str(tmp_path / "afile")]) == 1
    assert "opendl train: " in capsys.readouterr().err
    assert cli.main(["train", *small, "--epochs", "0.001", "--run-dir", str(tmp_path / "tiny")]) == 1
    assert "gives no training iteration" in capsys.readouterr().err
    run = tmp_path / "noval"
    assert cli.main(["train", *small, "--epochs", "1", "--validation-percent", "0", "--run-dir", str(run)]) == 0
    assert "model_final.hdl is evaluated" in capsys.readouterr().out and not os.path.exists(run / "model_best.hdl")


def test_opendl_command_trains_evaluates_and_predicts_detection(tmp_path, capsys):
    run = tmp_path / "det"
    rc = cli.main(["train", "--type", "detection", "--run-dir", str(run), "--demo-images", "40", "--epochs", "2",
                   "--batch-size", "8", "--capacity", "low", "--quiet"])
    assert rc == 0
    for name in ("model_best.hdl", "model_final.hdl", "evaluation.json", "summary.txt"):
        assert os.path.isfile(run / name), name
    out = capsys.readouterr().out
    assert "mean_ap (IoU 0.5:0.95)" in out and "AP per class: ring" in out
    with open(run / "evaluation.json") as f:
        assert "mean_ap" in json.load(f)["max_num_detections_all"][0]["area_all"][0]
    rc = cli.main(["evaluate", str(run / "model_best.hdl"), str(run / "demo_data"), "--work-dir", str(tmp_path / "ev")])
    assert rc == 0 and "40 images: mean_ap" in capsys.readouterr().out
    image = str(run / "demo_data" / "images" / "scene_0000.png")
    model = ha.read_dl_model(str(run / "model_best.hdl"))
    ha.set_dl_model_param(model, "min_confidence", 0.01)
    ha.write_dl_model(model, str(tmp_path / "low.hdl"))
    assert cli.main(["predict", str(tmp_path / "low.hdl"), image]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(image + ": ") and "row1" in line


def test_opendl_command_trains_segmentation(tmp_path, capsys):
    run = tmp_path / "seg"
    rc = cli.main(["train", "--type", "segmentation", "--run-dir", str(run), "--demo-images", "24", "--epochs", "1",
                   "--batch-size", "4", "--image-size", "32", "--quiet"])
    assert rc == 0
    for name in ("model_best.hdl", "model_final.hdl", "evaluation.json", "summary.txt"):
        assert os.path.isfile(run / name), name
    out = capsys.readouterr().out
    assert "best validation      mean_iou" in out and "class IoU: background" in out
    m = ha.read_dl_model(str(run / "model_best.hdl"))
    assert ha.get_dl_model_param(m, "type") == ["segmentation"]
    assert ha.get_dl_model_param(m, "class_names") == ["background", "ring", "plate", "bracket"]
