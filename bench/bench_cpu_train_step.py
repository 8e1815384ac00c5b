"""CPU training-step (and inference) benchmark: opendl vs PyTorch on the same network.

--model cnn (default), both frameworks: input HxWx3 -> 5 x [conv 3x3 (padding 1, bias) -> batch norm -> ReLU], a
2x2/2 max pooling after each of the first --pools convs -> global average pooling -> dense --classes -> softmax
cross entropy. Default widths 16-32-64-64-128, batch 32, 64x64x3 images, SGD with momentum 0.9.
--model resnet18: ResNet-18 (He et al. 2016; conv 7x7/2 without bias, BN, ReLU, max pool 3x3/2, four stages of two
basic blocks with 64-128-256-512 channels and 1x1/2 projection shortcuts, global average pooling, dense), built
layer by layer in both frameworks; use e.g. --batch 16 --size 224.
--model mobilenetv2: MobileNetV2 1.0 (Sandler et al. 2018; inverted residual blocks with depthwise 3x3
convolutions and ReLU6, linear bottlenecks, 1x1 conv to 1280, global average pooling, dense); e.g. --batch 32
--size 224.
--model resnet50: ResNet-50 (bottleneck blocks 1x1-3x3-1x1 [3, 4, 6, 3], widths 64..512 x 4, stride in the 3x3).
--model compact: the architecture of opendl's built-in pretrained_dl_classifier_compact.hdl (conv 3x3/2 32, then
three stages of conv 3x3 c + conv 3x3/2 2c for c = 32, 64, 128, each conv without bias + BN + ReLU; global
average pooling, dense).
--mode infer: inference instead of training steps: opendl apply_dl_model (batch norm with running statistics)
against torch.nn in eval mode under torch.inference_mode(). --optimize (with --mode infer) adds the optimized
forms: opendl's optimize_dl_model_for_inference copy (batch norm folded into the convolutions, liveness-planned
activation memory) as 'opendl_opt', and torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net)))
(PyTorch's conv-BN folding and oneDNN layout passes) as 'torch_opt'.

opendl: conv with activation 'none', batch normalisation with the ReLU fused ('relu' activation), and each step is
one train_dl_model_batch call on a list of sample dicts (so its time includes opendl's sample conversion).
PyTorch: torch.nn in channels_last memory format, torch.optim.SGD, torch.set_num_threads equal to opendl's thread
count (OMP_NUM_THREADS if set, else the CPU count); one step = zero_grad, forward, loss, backward, optimizer step.

Both frameworks run in one process, interleaved: after warm-up, each of --reps repetitions times --steps steps of
each framework (the order alternates between repetitions). Prints, per framework, the median ms/step and images/s
over the repetitions with the min-max spread, and the speed ratio opendl/torch (torch ms / opendl ms; higher means
opendl is faster). Without PyTorch installed it prints opendl's numbers alone.

    python bench/bench_cpu_train_step.py [--batch 32] [--size 64] [--widths 16,32,64,64,128] [--steps 10] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import opendl as ha

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # opendl's numbers alone
    torch = None


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn", choices=["cnn", "compact", "resnet18", "resnet50", "mobilenetv2"])
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64, help="image width = height")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--widths", default="16,32,64,64,128", help="conv output channels, comma separated")
    p.add_argument("--pools", type=int, default=3, help="max pooling after each of the first POOLS convs")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=5, help="repetitions (>= 3)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per framework before timing")
    p.add_argument("--threads", type=int, default=0, help="0: OMP_NUM_THREADS if set, else os.cpu_count()")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--no-torch", action="store_true", help="time opendl only")
    p.add_argument("--optimize", action="store_true",
                   help="--mode infer: also time the inference-optimized models of both frameworks")
    a = p.parse_args()
    a.widths = [int(w) for w in a.widths.split(",") if w]
    a.reps = max(a.reps, 3)
    if not a.threads:
        a.threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count() or 1
    return a


def _conv_bn(x, name, out, k, stride, act):
    x = ha.create_dl_layer_convolution(x, name, k, 1, stride, out, 1, "half_kernel_size", "none", "bias_term",
                                       "false")
    return ha.create_dl_layer_batch_normalization(x, name + "_bn", 0.9, 1e-5, act, [], [])


RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}


def resnet_opendl(x, blocks, bottleneck):
    x = _conv_bn(x, "conv1", 64, 7, 2, "relu")
    x = ha.create_dl_layer_pooling(x, "pool1", [3, 3], [2, 2], [1, 1], "maximum", [], [])
    c = 64
    for stage, w in enumerate((64, 128, 256, 512)):
        out = 4 * w if bottleneck else w
        for b in range(blocks[stage]):
            stride = 2 if stage > 0 and b == 0 else 1
            n = f"s{stage}b{b}"
            if bottleneck:
                h = _conv_bn(x, n + "_c1", w, 1, 1, "relu")
                h = _conv_bn(h, n + "_c2", w, 3, stride, "relu")
                h = _conv_bn(h, n + "_c3", out, 1, 1, "none")
            else:
                h = _conv_bn(x, n + "_c1", w, 3, stride, "relu")
                h = _conv_bn(h, n + "_c2", w, 3, 1, "none")
            short = _conv_bn(x, n + "_proj", out, 1, stride, "none") if stride != 1 or c != out else x
            x = ha.create_dl_layer_elementwise([h, short], n + "_sum", "sum", [], [], [])
            x = ha.create_dl_layer_activation(x, n + "_relu", "relu", [], [])
            c = out
    return x


def compact_opendl(x):
    x = _conv_bn(x, "stem", 32, 3, 2, "relu")
    for c in (32, 64, 128):
        x = _conv_bn(x, f"c{c}a", c, 3, 1, "relu")
        x = _conv_bn(x, f"c{c}b", 2 * c, 3, 2, "relu")
    return x


# MobileNetV2 1.0: (expansion t, channels c, repeats n, first stride s) per bottleneck stage.
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]


def _conv_bn_relu6(x, name, out, k, stride, groups=1, relu6=True):
    x = ha.create_dl_layer_convolution(x, name, k, 1, stride, out, groups, "half_kernel_size", "none",
                                       "bias_term", "false")
    x = ha.create_dl_layer_batch_normalization(x, name + "_bn", 0.9, 1e-5, "none", [], [])
    return ha.create_dl_layer_activation(x, name + "_relu6", "relu", "upper_bound", 6.0) if relu6 else x


def mobilenetv2_opendl(x):
    x = _conv_bn_relu6(x, "stem", 32, 3, 2)
    c = 32
    for si, (t, w, n, s) in enumerate(MOBILENET_V2):
        for b in range(n):
            stride = s if b == 0 else 1
            name = f"m{si}b{b}"
            h = _conv_bn_relu6(x, name + "_expand", c * t, 1, 1) if t != 1 else x
            h = _conv_bn_relu6(h, name + "_dw", c * t, 3, stride, groups=c * t)
            h = _conv_bn_relu6(h, name + "_project", w, 1, 1, relu6=False)
            x = ha.create_dl_layer_elementwise([h, x], name + "_sum", "sum", [], [], []) \
                if stride == 1 and c == w else h
            c = w
    return _conv_bn_relu6(x, "head", 1280, 1, 1)


def mobilenetv2_torch(a):
    def cbr(cin, cout, k, stride, groups=1, relu6=True):
        m = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return m + ([nn.ReLU6(True)] if relu6 else [])

    class Inverted(nn.Module):
        def __init__(self, cin, w, t, stride):
            super().__init__()
            hidden = cin * t
            body = (cbr(cin, hidden, 1, 1) if t != 1 else []) + cbr(hidden, hidden, 3, stride, hidden) + \
                cbr(hidden, w, 1, 1, relu6=False)
            self.body = nn.Sequential(*body)
            self.residual = stride == 1 and cin == w

        def forward(self, x):
            return self.body(x) + x if self.residual else self.body(x)

    layers, c = cbr(a.channels, 32, 3, 2), 32
    for t, w, n, s in MOBILENET_V2:
        for b in range(n):
            layers.append(Inverted(c, w, t, s if b == 0 else 1))
            c = w
    return layers + cbr(c, 1280, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, a.classes)]


def _cbr_torch(cin, cout, k, stride, relu=True):
    m = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return m + ([nn.ReLU(True)] if relu else [])


def resnet_torch(a, blocks, bottleneck):
    class Block(nn.Module):
        def __init__(self, cin, w, out, stride):
            super().__init__()
            if bottleneck:
                body = _cbr_torch(cin, w, 1, 1) + _cbr_torch(w, w, 3, stride) + _cbr_torch(w, out, 1, 1, False)
            else:
                body = _cbr_torch(cin, w, 3, stride) + _cbr_torch(w, out, 3, 1, False)
            self.body = nn.Sequential(*body)
            self.proj = nn.Sequential(*_cbr_torch(cin, out, 1, stride, False)) \
                if stride != 1 or cin != out else nn.Identity()

        def forward(self, x):
            return F.relu(self.body(x) + self.proj(x))

    layers, c = _cbr_torch(a.channels, 64, 7, 2) + [nn.MaxPool2d(3, 2, 1)], 64
    for stage, w in enumerate((64, 128, 256, 512)):
        out = 4 * w if bottleneck else w
        for b in range(blocks[stage]):
            layers.append(Block(c, w, out, 2 if stage > 0 and b == 0 else 1))
            c = out
    return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, a.classes)]


def compact_torch(a):
    layers = _cbr_torch(a.channels, 32, 3, 2)
    for c in (32, 64, 128):
        layers += _cbr_torch(c, c, 3, 1) + _cbr_torch(c, 2 * c, 3, 2)
    return layers + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, a.classes)]


def build_opendl(a):
    x = ha.create_dl_layer_input("image", [a.size, a.size, a.channels], [], [])
    target = ha.create_dl_layer_input("image_label_id", [1, 1, 1], [], [])
    weights = ha.create_dl_layer_input("weights", [1, 1, 1], [], [])
    if a.model != "cnn":
        if a.model in RESNET_BLOCKS:
            x = resnet_opendl(x, RESNET_BLOCKS[a.model], a.model == "resnet50")
        else:
            x = mobilenetv2_opendl(x) if a.model == "mobilenetv2" else compact_opendl(x)
        a.widths, a.pools = [], 0
    for i, w in enumerate(a.widths):
        x = ha.create_dl_layer_convolution(x, f"conv{i}", 3, 1, 1, w, 1, "half_kernel_size", "none", [], [])
        x = ha.create_dl_layer_batch_normalization(x, f"bn{i}", 0.9, 1e-5, "relu", [], [])
        if i < a.pools:
            x = ha.create_dl_layer_pooling(x, f"pool{i}", [2, 2], [2, 2], "none", "maximum", [], [])
    x = ha.create_dl_layer_pooling(x, "gap", [1, 1], [1, 1], "none", "global_average", [], [])
    x = ha.create_dl_layer_dense(x, "fc", a.classes, [], [])
    sm = ha.create_dl_layer_softmax(x, "softmax", [], [])
    loss = ha.create_dl_layer_loss_cross_entropy(sm, target, weights, "loss", 1.0, [], [])
    model = ha.create_dl_model(loss)
    ha.set_dl_model_param(model, "batch_size", a.batch)
    ha.set_dl_model_param(model, "solver_type", "sgd")
    ha.set_dl_model_param(model, "learning_rate", a.lr)
    ha.set_dl_model_param(model, "momentum", 0.9)
    return model


def build_torch(a):
    layers, c = [], a.channels
    for i, w in enumerate(a.widths):
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=True), nn.BatchNorm2d(w, eps=1e-5), nn.ReLU(inplace=True)]
        if i < a.pools:
            layers.append(nn.MaxPool2d(2, 2))
        c = w
    if a.model in RESNET_BLOCKS:
        layers = resnet_torch(a, RESNET_BLOCKS[a.model], a.model == "resnet50")
    elif a.model == "mobilenetv2":
        layers = mobilenetv2_torch(a)
    elif a.model == "compact":
        layers = compact_torch(a)
    else:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, a.classes)]
    net = nn.Sequential(*layers).to(memory_format=torch.channels_last)
    net.train()
    return net, torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)


def time_steps(step, n):
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) * 1e3 / n


def summary(name, ms, batch):
    med = statistics.median(ms)
    print(f"{name:10s} median {med:8.2f} ms/step  {batch * 1e3 / med:8.1f} images/s   "
          f"spread {min(ms):.2f}..{max(ms):.2f} ms ({(max(ms) - min(ms)) / med * 100:.1f}% of median)   "
          f"runs: {', '.join(f'{m:.2f}' for m in ms)}")
    return med


def main():
    a = parse()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((a.batch, a.size, a.size, a.channels)).astype(np.float32)
    labels = rng.integers(0, a.classes, a.batch)

    ha.set_system("thread_num", a.threads)
    model = build_opendl(a)
    samples = [{"image": images[i], "image_label_id": int(labels[i]), "weights": 1.0} for i in range(a.batch)]

    def opendl_step():
        ha.as_python_dict_s(ha.train_dl_model_batch(model, samples))

    if a.mode == "infer":
        infer_samples = [{"image": images[i]} for i in range(a.batch)]

        def opendl_step():  # noqa: F811 - inference replaces the training step
            ha.apply_dl_model(model, infer_samples, ["softmax"])

    runners = {"opendl": opendl_step}
    if a.mode == "infer" and a.optimize:
        cpu = ha.query_available_dl_devices(["runtime"], ["cpu"])[0]
        opt_model, _ = ha.optimize_dl_model_for_inference(model, cpu, "float32", [], [])
        runners["opendl_opt"] = lambda: ha.apply_dl_model(opt_model, infer_samples, ["softmax"])
    use_torch = torch is not None and not a.no_torch
    if use_torch:
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        net, opt = build_torch(a)
        x = torch.from_numpy(images).permute(0, 3, 1, 2)  # NHWC storage viewed as NCHW = channels_last
        assert x.is_contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels)

        def torch_step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

        if a.mode == "infer":
            net.eval()

            def torch_step():  # noqa: F811
                with torch.inference_mode():
                    torch.softmax(net(x), 1)

        runners["torch"] = torch_step
        if a.mode == "infer" and a.optimize:
            with torch.no_grad():
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x)))

            def torch_opt_step():
                with torch.inference_mode():
                    torch.softmax(frozen(x), 1)

            runners["torch_opt"] = torch_opt_step

    print(f"{a.model} {a.mode}: batch {a.batch}, {a.size}x{a.size}x{a.channels}, widths {a.widths}, pools {a.pools}, "
          f"classes {a.classes}, "
          f"threads {a.threads} (opendl thread_num {ha.get_system_s('thread_num')}"
          + (f", torch {torch.get_num_threads()} / torch {torch.__version__}" if use_torch else ", no torch")
          + f"), {a.reps} reps x {a.steps} steps after {a.warmup} warm-up steps")
    for run in runners.values():
        for _ in range(a.warmup):
            run()
    ms = {k: [] for k in runners}
    names = list(runners)
    for r in range(a.reps):
        for k in (names if r % 2 == 0 else names[::-1]):
            ms[k].append(time_steps(runners[k], a.steps))
    med = {k: summary(k, v, a.batch) for k, v in ms.items()}
    for o in (k for k in names if k.startswith("opendl")):
        for t in (k for k in names if k.startswith("torch")):
            ratios = [tt / oo for oo, tt in zip(ms[o], ms[t])]
            print(f"speed ratio {o}/{t} ({t} ms / {o} ms, higher = opendl faster): "
                  f"{med[t] / med[o]:.3f} (per-repetition {min(ratios):.3f}..{max(ratios):.3f}; "
                  f"from the fastest repetitions {min(ms[t]) / min(ms[o]):.3f}, the better estimate when "
                  f"other processes compete for the cores)")


if __name__ == "__main__":
    main()
