"""GPU training benchmark: opendl's CUDA backend against PyTorch eager and torch.compile on the same networks.

The networks are those of bench_cpu_train_step.py (compact, resnet18, resnet50, mobilenetv2, cnn), built with
opendl's layer operators and with torch.nn: same layers, same shapes, SGD with momentum 0.9, softmax cross
entropy over --classes classes on --size x --size x 3 images.

Per (model, batch) it times, interleaved in one process (the order alternates between repetitions):
- opendl: one train_dl_model_batch call per step on a list of sample dicts (host numpy images, so the step
  includes opendl's sample packing and the upload), model moved with set_dl_model_param(model, 'runtime', 'gpu');
- torch: torch.nn in channels_last, cudnn.benchmark on, SGD(fused=True), the batch already on the device
  (--torch-data host copies it from pinned host memory each step instead);
- torch_compile: the same module through torch.compile (default mode), warmed up until compiled;
- with --direct, also opendl_direct: a second opendl model trained with set_system 'gpu_graphs' 'false' (every
  kernel launched from the host instead of replaying the step's CUDA graph), which measures what the graphs gain;
- with --plain, also opendl_plain: a second opendl model whose activations are all plain NCHW (its layouts planned
  with blocked layouts off, as OPENDL_ACTIVATION_LAYOUT=plain would), which measures what channels-last gains.
Each row also says how opendl's steps ran ('opendl_graphs': micro-batches replayed from a CUDA graph, recordings
made, and whether the network could not be recorded).
Precision: --precision tf32 (default: both frameworks may use TF32 tensor cores in convolutions and matrix
products; opendl's set_system 'gpu_tf32' 'true', torch's cudnn.allow_tf32 / matmul.allow_tf32) or fp32 (TF32 off
in both).

Each repetition runs --steps steps of a framework and ends with a device synchronisation (torch) or with the
step's own result read back (opendl: train_dl_model_batch returns the losses and checks the gradients for
non-finite values, so at most the last fused solver update is still in flight when the timer stops).

Reported per configuration: median images/s of each framework with the min-max spread, the speed ratios
opendl / torch and opendl / torch_compile (median of the per-repetition ratios, and from the fastest
repetitions), the training FLOPs per image (counted once with torch.utils.flop_counter on the torch network:
convolutions and matrix products, forward and backward), and MFU against the peaks measured by --peaks (dense
8192^3 matrix products in fp32 without TF32, TF32 and bf16). --memory measures the device memory each framework
holds after --steps training steps, each in its own fresh process (free memory before and after, read with
cudaMemGetInfo through torch.cuda.mem_get_info after the CUDA context exists; opendl's stream-ordered pool keeps
its peak, torch's caching allocator likewise), and reports the ratio opendl / torch.

Results go to stdout as a table and, with --out FILE, as one JSON object per configuration (appended).
--device cpu runs the same code on the CPU (opendl's CPU backend and torch on the CPU): a smoke test of the
script where no GPU exists, not a benchmark.

    python bench/bench_gpu_train.py --peaks --models compact,resnet18 --batches 16,64 --steps 20 --reps 5
    python bench/bench_gpu_train.py --models resnet50 --batches 256 --memory --no-compile
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_cpu_train_step as arch  # noqa: E402  (the shared network definitions)

import opendl as ha  # noqa: E402

torch = arch.torch
MODELS = ["compact", "resnet18", "resnet50", "mobilenetv2", "cnn"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="compact,resnet18,resnet50,mobilenetv2",
                   help="comma separated, from " + ", ".join(MODELS))
    p.add_argument("--batches", default="16,64,256", help="comma separated batch sizes")
    p.add_argument("--size", type=int, default=224, help="image width = height")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=5, help="repetitions (>= 3)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per framework before timing")
    p.add_argument("--compile-warmup", type=int, default=3, help="untimed steps of torch_compile (compiles)")
    p.add_argument("--precision", default="tf32", choices=["tf32", "fp32"])
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    p.add_argument("--no-torch", action="store_true", help="time opendl only")
    p.add_argument("--direct", action="store_true",
                   help="also time opendl with 'gpu_graphs' 'false' (kernels launched one by one)")
    p.add_argument("--plain", action="store_true",
                   help="also time opendl with plain NCHW activations (no channels-last)")
    p.add_argument("--torch-data", default="device", choices=["device", "host"],
                   help="torch's batch: resident on the device, or copied from pinned host memory each step")
    p.add_argument("--peaks", action="store_true", help="measure the fp32 / TF32 / bf16 matmul peaks first")
    p.add_argument("--memory", action="store_true", help="also measure held device memory (fresh processes)")
    p.add_argument("--device", default="gpu", choices=["gpu", "cpu"], help="cpu: smoke test of the script")
    p.add_argument("--gpu", type=int, default=0, help="GPU index")
    p.add_argument("--out", default="", help="append one JSON line per configuration to this file")
    p.add_argument("--memory-child", default="", help=argparse.SUPPRESS)  # "framework:model:batch"
    a = p.parse_args(argv)
    a.models = [m for m in a.models.split(",") if m]
    for m in a.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r} (available: {', '.join(MODELS)})")
    a.batches = [int(b) for b in a.batches.split(",") if b]
    a.reps = max(a.reps, 3)
    if torch is None or a.no_torch:
        a.no_torch, a.no_compile = True, True
    return a


def arch_args(a, model, batch):
    """The namespace bench_cpu_train_step's builders read."""
    return SimpleNamespace(model=model, batch=batch, size=a.size, channels=3, classes=a.classes, lr=0.01,
                           widths=[16, 32, 64, 64, 128], pools=3)


def torch_device(a):
    return torch.device(f"cuda:{a.gpu}" if a.device == "gpu" else "cpu")


def set_precision(a):
    tf32 = a.precision == "tf32"
    ha.set_system("gpu_tf32", "true" if tf32 else "false")
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True


def sync(a):
    if torch is not None and a.device == "gpu":
        torch.cuda.synchronize()


def data(a, batch):
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, a.size, a.size, 3)).astype(np.float32)
    labels = rng.integers(0, a.classes, batch)
    return images, labels


def opendl_runner(a, model_name, batch, images, labels):
    model = arch.build_opendl(arch_args(a, model_name, batch))
    if a.device == "gpu":
        ha.set_dl_model_param(model, "runtime", "gpu")
        if a.gpu:
            ha.set_dl_model_param(model, "gpu", a.gpu)
    samples = [{"image": images[i], "image_label_id": int(labels[i]), "weights": 1.0} for i in range(batch)]

    def step():
        ha.train_dl_model_batch(model, samples)

    return model, step


def graph_stats(model):
    """How the model's training steps ran: micro-batches replayed from a CUDA graph, recordings, refused."""
    from opendl import _core
    return _core._train_step_graphs(model.core("bench_gpu_train"))


def direct(step):
    """The step with CUDA graphs off (set_system 'gpu_graphs' is process-wide: on again afterwards)."""
    def run():
        ha.set_system("gpu_graphs", "false")
        try:
            step()
        finally:
            ha.set_system("gpu_graphs", "true")
    return run


def plain(make):
    """make() and the steps of the model it returns with blocked layouts off, so that every activation is planned
    plain whenever the network allocates its buffers (the switch is process-wide: on again afterwards)."""
    from opendl import _core

    def off(f):
        def run():
            _core._set_blocked_layouts(False)
            try:
                return f()
            finally:
                _core._set_blocked_layouts(True)
        return run
    model, step = off(make)()
    return model, off(step)


def blocked_layers(model):
    """How many of the model's layers keep a channel-blocked or channels-last output."""
    from opendl import _core
    return sum(1 for b in _core._layer_blocks(model.core("bench_gpu_train")).values() if b)


def torch_runners(a, model_name, batch, images, labels):
    """{'torch': step, 'torch_compile': step} sharing one network and optimizer."""
    dev = torch_device(a)
    torch.manual_seed(0)
    net, _ = arch.build_torch(arch_args(a, model_name, batch))
    net = net.to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9,
                          **({"fused": True} if dev.type == "cuda" else {"foreach": True}))
    x_host = torch.from_numpy(images).permute(0, 3, 1, 2)  # NHWC storage seen as NCHW: channels_last
    y_host = torch.from_numpy(labels)
    if a.torch_data == "host" and dev.type == "cuda":
        x_host, y_host = x_host.pin_memory(), y_host.pin_memory()
    x_dev, y_dev = x_host.to(dev), y_host.to(dev)

    def make(module):
        def step():
            if a.torch_data == "host":
                x, y = x_host.to(dev, non_blocking=True), y_host.to(dev, non_blocking=True)
            else:
                x, y = x_dev, y_dev
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(module(x), y).backward()
            opt.step()
        return step

    runners = {"torch": make(net)}
    if not a.no_compile:
        runners["torch_compile"] = make(torch.compile(net))
    return net, x_dev, y_dev, runners


def train_flops_per_image(net, x, y, batch):
    """Convolution and matmul FLOPs of one forward + backward, counted by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(net(x), y).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def measure_peaks(a):
    """TFLOP/s of dense 8192^3 matrix products: fp32 without TF32, TF32, bf16 (mean of 10 after 3 warm-ups)."""
    dev = torch_device(a)
    n = 8192 if a.device == "gpu" else 1024
    peaks = {}
    saved = torch.backends.cuda.matmul.allow_tf32
    for name, dtype, tf32 in (("fp32", torch.float32, False), ("tf32", torch.float32, True),
                              ("bf16", torch.bfloat16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x = torch.randn(n, n, device=dev, dtype=dtype)
        w = torch.randn(n, n, device=dev, dtype=dtype)
        for _ in range(3):
            x @ w
        sync(a)
        t0 = time.perf_counter()
        for _ in range(10):
            x @ w
        sync(a)
        peaks[name] = 2 * n ** 3 * 10 / (time.perf_counter() - t0) / 1e12
        del x, w
    torch.backends.cuda.matmul.allow_tf32 = saved
    return peaks


def time_steps(step, n, a):
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(a)
    return (time.perf_counter() - t0) / n


def memory_child(a):
    """One framework, one configuration, in this fresh process: bytes of device memory held after training."""
    framework, model_name, batch = a.memory_child.split(":")
    batch = int(batch)
    set_precision(a)
    images, labels = data(a, batch)
    torch.cuda.init()
    torch.cuda.set_device(a.gpu)
    torch.zeros(1, device=torch_device(a))  # the CUDA context exists before the first reading
    free0, total = torch.cuda.mem_get_info(a.gpu)
    if framework == "opendl":
        _, step = opendl_runner(a, model_name, batch, images, labels)
    else:
        a.no_compile = True
        step = torch_runners(a, model_name, batch, images, labels)[3]["torch"]
    for _ in range(a.steps):
        step()
    sync(a)
    free1, _ = torch.cuda.mem_get_info(a.gpu)
    out = {"held_bytes": free0 - free1}
    if framework == "torch":
        out["torch_max_reserved"] = torch.cuda.max_memory_reserved(a.gpu)
        out["torch_max_allocated"] = torch.cuda.max_memory_allocated(a.gpu)
    print("MEMORY " + json.dumps(out))


def memory_of(a, framework, model_name, batch):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", f"{framework}:{model_name}:{batch}",
           "--size", str(a.size), "--classes", str(a.classes), "--steps", str(max(a.warmup, 3)),
           "--precision", a.precision, "--gpu", str(a.gpu), "--torch-data", a.torch_data]
    r = subprocess.run(cmd, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.startswith("MEMORY "):
            return json.loads(line[7:])
    return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]}


def run_config(a, model_name, batch, peaks):
    images, labels = data(a, batch)
    row = {"model": model_name, "batch": batch, "size": a.size, "classes": a.classes, "precision": a.precision,
           "device": a.device, "steps": a.steps, "reps": a.reps, "torch_data": a.torch_data}
    runners = {}
    models = {}
    try:
        models["opendl"], runners["opendl"] = opendl_runner(a, model_name, batch, images, labels)
        if a.direct:
            models["opendl_direct"], step = opendl_runner(a, model_name, batch, images, labels)
            runners["opendl_direct"] = direct(step)
        if a.plain:
            models["opendl_plain"], runners["opendl_plain"] = plain(
                lambda: opendl_runner(a, model_name, batch, images, labels))
    except ha.HOperatorError as e:  # e.g. out of device memory: the row says so, the benchmark goes on
        row["opendl_error"] = str(e)
    flops = None
    if not a.no_torch:
        try:
            net, x, y, t = torch_runners(a, model_name, batch, images, labels)
            flops = train_flops_per_image(net, x, y, batch)
            runners.update(t)
        except torch.cuda.OutOfMemoryError as e:
            row["torch_error"] = str(e).splitlines()[0]
    row["train_gflop_per_image"] = flops / 1e9 if flops else None
    for name, run in runners.items():
        for _ in range(a.compile_warmup + a.warmup if name == "torch_compile" else a.warmup):
            run()
        sync(a)
    names = list(runners)
    secs = {k: [] for k in names}
    for r in range(a.reps):
        for k in (names if r % 2 == 0 else names[::-1]):
            secs[k].append(time_steps(runners[k], a.steps, a))
    for k, v in secs.items():
        ips = [batch / s for s in v]
        row[k] = {"images_per_s": statistics.median(ips), "min": min(ips), "max": max(ips),
                  "ms_per_step": statistics.median(v) * 1e3}
        if flops and peaks:
            achieved = row[k]["images_per_s"] * flops / 1e12
            row[k]["tflops"] = achieved
            row[k]["mfu"] = {p: achieved / peak for p, peak in peaks.items()}
    for k, model in models.items():
        row[k + "_graphs"] = graph_stats(model)
        row[k + "_blocked_layers"] = blocked_layers(model)
    if "opendl" in secs:
        for t in (k for k in names if k.startswith("torch") or k in ("opendl_direct", "opendl_plain")):
            per_rep = [tt / oo for oo, tt in zip(secs["opendl"], secs[t])]
            row[f"ratio_opendl_{t}"] = {"median": statistics.median(per_rep), "min": min(per_rep),
                                        "max": max(per_rep), "fastest": min(secs[t]) / min(secs["opendl"])}
    if a.memory and a.device == "gpu":
        mem = {f: memory_of(a, f, model_name, batch) for f in ("opendl", "torch")}
        row["memory"] = mem
        if "held_bytes" in mem["opendl"] and "held_bytes" in mem["torch"] and mem["torch"]["held_bytes"] > 0:
            row["memory_ratio_opendl_torch"] = mem["opendl"]["held_bytes"] / mem["torch"]["held_bytes"]
    return row


def fmt(row):
    def ips(k):
        return f"{row[k]['images_per_s']:.1f}" if k in row else "-"

    def ratio(k):
        r = row.get(f"ratio_opendl_{k}")
        return f"{r['median']:.2f} ({r['min']:.2f}..{r['max']:.2f})" if r else "-"

    mfu = row.get("opendl", {}).get("mfu", {}).get("tf32" if row["precision"] == "tf32" else "fp32")
    g = row.get("opendl_graphs", {})
    graphs = "refused" if g.get("refused") else f"{g.get('replayed', 0)} replayed" if g else "-"
    mem = row.get("memory_ratio_opendl_torch")
    return (f"| {row['model']} | {row['batch']} | {ips('opendl')} | {ips('torch')} | {ips('torch_compile')} | "
            f"{ratio('torch')} | {ratio('torch_compile')} | {f'{mfu * 100:.0f} %' if mfu else '-'} | "
            f"{f'{mem:.2f}' if mem else '-'} | {ratio('opendl_direct')} | {ratio('opendl_plain')} | {graphs} |")


def main(argv=None):
    a = parse(argv)
    if a.memory_child:
        return memory_child(a)
    if a.device == "gpu":
        gpus = ha.query_available_dl_devices(["runtime"], ["gpu"])
        if not gpus:
            sys.exit("no GPU visible to opendl (query_available_dl_devices lists none); --device cpu runs the "
                     "script on the CPU")
        print("opendl GPU:", ha.get_dl_device_param(gpus[a.gpu], "name"))
        if not a.no_torch and not torch.cuda.is_available():
            sys.exit("torch sees no CUDA device; use --no-torch to time opendl alone")
    set_precision(a)
    peaks = measure_peaks(a) if a.peaks and torch is not None else {}
    if peaks:
        print("measured peaks (TFLOP/s): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()))
    print(f"torch {torch.__version__ if torch is not None else '(none)'}, precision {a.precision}, {a.size}x{a.size}x3, "
          f"{a.classes} classes, {a.reps} reps x {a.steps} steps after {a.warmup} warm-up steps")
    print("| model | batch | opendl img/s | torch img/s | torch.compile img/s | opendl / torch | "
          "opendl / torch.compile | opendl MFU | memory opendl / torch | graphs / direct | channels-last / plain | "
          "CUDA graphs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for m in a.models:
        for b in a.batches:
            row = run_config(a, m, b, peaks)
            row["peaks_tflops"] = peaks
            rows.append(row)
            print(fmt(row), flush=True)
            for k in ("opendl_error", "torch_error"):
                if k in row:
                    print(f"  {k}: {row[k]}")
            if a.out:
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if torch is not None and a.device == "gpu":
                torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    main()
