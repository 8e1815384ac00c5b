"""The GPU benchmark script (bench/bench_gpu_train.py) must not rot where no GPU exists: its CPU mode runs the
same code path for opendl (model building, sample batches, timing, the result rows) on a tiny configuration."""

import importlib.util
import json
import os

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "bench_gpu_train.py")


def load():
    spec = importlib.util.spec_from_file_location("bench_gpu_train", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cpu_mode_times_opendl_and_writes_one_row_per_configuration(tmp_path, capsys):
    bench = load()
    out = tmp_path / "rows.jsonl"
    rows = bench.main(["--device", "cpu", "--no-torch", "--models", "cnn,compact", "--batches", "2,3",
                       "--size", "32", "--classes", "4", "--steps", "1", "--reps", "3", "--warmup", "1",
                       "--direct", "--plain", "--out", str(out)])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["model"], r["batch"]) for r in lines] == [("cnn", 2), ("cnn", 3), ("compact", 2), ("compact", 3)]
    for r in rows:
        o = r["opendl"]
        assert o["min"] <= o["images_per_s"] <= o["max"] and o["images_per_s"] > 0
        assert "torch" not in r and "opendl_error" not in r
        # the CPU backend records nothing; the graphs-off twin is timed and compared all the same
        assert r["opendl_graphs"] == {"recorded": 0, "refused": 0, "replayed": 0}
        assert r["opendl_direct"]["images_per_s"] > 0 and r["ratio_opendl_opendl_direct"]["median"] > 0
        # the plain twin keeps every activation plain; the model under test does not (the CPU's blocked layouts)
        assert r["opendl_plain_blocked_layers"] == 0 and r["opendl_blocked_layers"] > 0
        assert r["opendl_plain"]["images_per_s"] > 0 and r["ratio_opendl_opendl_plain"]["median"] > 0
    table = capsys.readouterr().out
    assert "| cnn | 2 |" in table and "| compact | 3 |" in table


def test_unknown_model_is_refused():
    bench = load()
    with pytest.raises(SystemExit):
        bench.parse(["--models", "vgg16"])
