"""Forward values of every layer and loss against independent numpy float64 implementations written here.
Tolerance: rtol 1e-4 / atol 1e-5 covers float32 accumulation over the few hundred terms of these small
layers (relative rounding ~ sqrt(n) * 6e-8); a semantic error (flipped kernel, padding order, interpolation
convention) produces O(1) differences."""

import numpy as np
import pytest

import opendl as ha

RTOL, ATOL = 1e-4, 1e-5
rng = np.random.default_rng(7)


def run(build, shapes, batch, data=None):
    """Builds input layers -> layer, runs apply_dl_model; returns (outputs (N,H,W,C), inputs, model)."""
    inputs = {n: ha.create_dl_layer_input(n, s, [], []) for n, s in shapes.items()}
    out = build(inputs)
    m = ha.create_dl_model(out)
    ha.set_dl_model_param(m, "batch_size", batch)
    if data is None:
        data = {n: rng.standard_normal((batch, s[1], s[0], s[2])).astype(np.float32) for n, s in shapes.items()}
    samples = [{n: data[n][i] for n in data} for i in range(batch)]
    res = [ha.as_python_dict(r) for r in ha.apply_dl_model(m, samples, ["L"])]
    return np.stack([r["L"] for r in res]), data, m


def nchw(a):
    return np.transpose(a, (0, 3, 1, 2)).astype(np.float64)


def nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def ref_conv(x, w, b, stride, dil, pads, groups):
    # x (N,C,H,W), w (K, C/g, kh, kw); pads (top, bottom, left, right); cross-correlation as in every DL library.
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    oh = (xp.shape[2] - ((kh - 1) * dil[0] + 1)) // stride[0] + 1
    ow = (xp.shape[3] - ((kw - 1) * dil[1] + 1)) // stride[1] + 1
    y = np.zeros((n, k, oh, ow))
    kg = k // groups
    for o in range(k):
        g = o // kg
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dil[0]: i * dil[0] + stride[0] * (oh - 1) + 1: stride[0],
                           j * dil[1]: j * dil[1] + stride[1] * (ow - 1) + 1: stride[1]]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
        if b is not None:
            y[:, o] += b[o]
    return y


@pytest.mark.parametrize("kw", [
    dict(ks=3, dil=1, st=1, nk=5, g=1, pad="half_kernel_size", pads=(1, 1, 1, 1)),
    dict(ks=[3, 2], dil=[1, 2], st=[2, 1], nk=4, g=2, pad=[1, 0, 2, 1], pads=(2, 1, 1, 0)),
    dict(ks=3, dil=1, st=1, nk=4, g=4, pad="none", pads=(0, 0, 0, 0)),
])
def test_convolution(kw):
    out, data, m = run(lambda i: ha.create_dl_layer_convolution(i["x"], "L", kw["ks"], kw["dil"], kw["st"], kw["nk"],
                                                                kw["g"], kw["pad"], "none", [], []),
                       {"x": [8, 7, 4]}, 2)
    w = ha.get_dl_model_layer_weights(m, "L", "weights").astype(np.float64)
    b = ha.get_dl_model_layer_weights(m, "L", "bias").astype(np.float64)
    ks = kw["ks"] if isinstance(kw["ks"], list) else [kw["ks"]] * 2
    st = kw["st"] if isinstance(kw["st"], list) else [kw["st"]] * 2
    dl = kw["dil"] if isinstance(kw["dil"], list) else [kw["dil"]] * 2
    assert w.shape == (kw["nk"], 4 // kw["g"], ks[1], ks[0])
    ref = ref_conv(nchw(data["x"]), w, b, (st[1], st[0]), (dl[1], dl[0]), kw["pads"], kw["g"])
    np.testing.assert_allclose(out, nhwc(ref), rtol=RTOL, atol=ATOL)


def test_convolution_activations():
    for act, f in [("relu", lambda v: np.maximum(v, 0)), ("sigmoid", lambda v: 1 / (1 + np.exp(-v))),
                   ("tanh", np.tanh)]:
        out, data, m = run(lambda i: ha.create_dl_layer_convolution(i["x"], "L", 1, 1, 1, 3, 1, "none", act, [], []),
                           {"x": [4, 3, 2]}, 2)
        w = ha.get_dl_model_layer_weights(m, "L", "weights").astype(np.float64)
        b = ha.get_dl_model_layer_weights(m, "L", "bias").astype(np.float64)
        ref = f(ref_conv(nchw(data["x"]), w, b, (1, 1), (1, 1), (0, 0, 0, 0), 1))
        np.testing.assert_allclose(out, nhwc(ref), rtol=RTOL, atol=ATOL)


def test_transposed_convolution():
    out, data, m = run(lambda i: ha.create_dl_layer_transposed_convolution(i["x"], "L", 3, 2, 3, 1, 1, [], []),
                       {"x": [4, 3, 2]}, 2)
    w = ha.get_dl_model_layer_weights(m, "L", "weights").astype(np.float64)  # (out, in, k, k)
    b = ha.get_dl_model_layer_weights(m, "L", "bias").astype(np.float64)
    x = nchw(data["x"])
    n, c, h, wd = x.shape
    full = np.zeros((n, 3, (h - 1) * 2 + 3, (wd - 1) * 2 + 3))
    for yy in range(h):
        for xx in range(wd):
            full[:, :, yy * 2:yy * 2 + 3, xx * 2:xx * 2 + 3] += np.einsum("nc,ocij->noij", x[:, :, yy, xx], w)
    ref = full[:, :, 1:-1, 1:-1] + b[None, :, None, None]
    assert out.shape == (2, 2 * 3 - 1, 2 * 4 - 1, 3)
    np.testing.assert_allclose(out, nhwc(ref), rtol=RTOL, atol=ATOL)


def ref_pool(x, k, s, pads, mode):
    n, c, h, w = x.shape
    oh = (h + pads[0] + pads[1] - k[0]) // s[0] + 1
    ow = (w + pads[2] + pads[3] - k[1]) // s[1] + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s[0] - pads[0], j * s[1] - pads[2]
            win = x[:, :, max(y0, 0):min(y0 + k[0], h), max(x0, 0):min(x0 + k[1], w)]
            y[:, :, i, j] = win.max(axis=(2, 3)) if mode == "max" else win.mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("args,k,s,pads,mode", [
    (([2, 2], [2, 2], "none", "maximum"), (2, 2), (2, 2), (0, 0, 0, 0), "max"),
    (([3, 3], [2, 2], "implicit", "maximum"), (3, 3), (2, 2), (0, 0, 0, 0), "max"),  # 7x8 -> windows fit
    (([3, 2], [1, 2], [1, 0], "average"), (2, 3), (2, 1), (0, 0, 1, 1), "avg"),
    (([3, 3], [2, 2], "implicit", "average"), (3, 3), (2, 2), (0, 0, 0, 0), "avg"),
])
def test_pooling(args, k, s, pads, mode):
    out, data, _ = run(lambda i: ha.create_dl_layer_pooling(i["x"], "L", *args, [], []), {"x": [8, 7, 3]}, 2)
    x = nchw(data["x"])
    if args[2] == "implicit":  # HALCON's 'implicit': extra bottom/right padding so the last window fits
        oh, ow = -(-(7 - 3) // 2) + 1, -(-(8 - 3) // 2) + 1
        pads = (0, (oh - 1) * 2 + 3 - 7, 0, (ow - 1) * 2 + 3 - 8)
    np.testing.assert_allclose(out, nhwc(ref_pool(x, k, s, pads, mode)), rtol=RTOL, atol=ATOL)


def test_global_pooling():
    for mode, f in [("global_average", np.mean), ("global_maximum", np.max)]:
        out, data, _ = run(lambda i: ha.create_dl_layer_pooling(i["x"], "L", [1, 1], [1, 1], "none", mode, [], []),
                           {"x": [5, 6, 3]}, 2)
        np.testing.assert_allclose(out[:, 0, 0, :], f(data["x"].astype(np.float64), axis=(1, 2)), rtol=RTOL,
                                   atol=ATOL)


def test_batch_normalization_training_and_inference():
    inputs = {"x": ha.create_dl_layer_input("x", [3, 2, 4], [], [])}
    bn = ha.create_dl_layer_batch_normalization(inputs["x"], "L", 0.9, 1e-3, "none", [], [])
    t = ha.create_dl_layer_input("t", [3, 2, 4], [], [])
    wt = ha.create_dl_layer_input("wt", [3, 2, 4], [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_distance(bn, t, wt, "loss", "l2", 1.0, [], []))
    ha.set_dl_model_param(m, "batch_size", 5)
    ha.set_dl_model_param(m, "learning_rate", 1e-30)  # keep gamma/beta as set for the inference check
    gamma = rng.uniform(0.5, 2, 4).astype(np.float32)
    beta = rng.standard_normal(4).astype(np.float32)
    ha.set_dl_model_layer_weights(gamma, m, "L", "weights")
    ha.set_dl_model_layer_weights(beta, m, "L", "bias")
    x = rng.standard_normal((5, 2, 3, 4)).astype(np.float32) * 3 + 1
    z = np.zeros((2, 3, 4), np.float32)
    ha.as_python_dict_s(ha.train_dl_model_batch(m, [{"x": x[i], "t": z, "wt": z + 1} for i in range(5)]))
    y = ha.get_dl_model_layer_activations(m, "L")
    xd = x.astype(np.float64)
    mu, var = xd.mean(axis=(0, 1, 2)), xd.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (xd - mu) / np.sqrt(var + 1e-3) * gamma + beta, rtol=RTOL, atol=1e-4)
    # Running statistics: momentum 0.9 from mean 0 / variance 1, variance stored unbiased (M = 30 values).
    rm = ha.get_dl_model_layer_weights(m, "L", "batchnorm_mean")
    rv = ha.get_dl_model_layer_weights(m, "L", "batchnorm_variance")
    np.testing.assert_allclose(rm, 0.1 * mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * var * 30 / 29, rtol=1e-5)
    # Inference uses the running statistics.
    out = [ha.as_python_dict(r) for r in ha.apply_dl_model(m, [{"x": x[0]}], ["L"])][0]["L"]
    np.testing.assert_allclose(out, (xd[0] - rm) / np.sqrt(rv + 1e-3) * gamma + beta, rtol=RTOL, atol=1e-4)


def test_batch_normalization_auto_momentum_is_the_cumulative_average():
    """Momentum 'auto': update k uses m = k / (k + 1), so after K steps the running statistics are the plain means
    of the K batch means and unbiased batch variances (the initial 0 / 1 carry no weight)."""
    x_in = ha.create_dl_layer_input("x", [3, 2, 4], [], [])
    bn = ha.create_dl_layer_batch_normalization(x_in, "L", "auto", 1e-3, "none", [], [])
    t = ha.create_dl_layer_input("t", [3, 2, 4], [], [])
    wt = ha.create_dl_layer_input("wt", [3, 2, 4], [], [])
    m = ha.create_dl_model(ha.create_dl_layer_loss_distance(bn, t, wt, "loss", "l2", 1.0, [], []))
    ha.set_dl_model_param(m, "batch_size", 5)
    ha.set_dl_model_param(m, "learning_rate", 1e-30)
    z = np.zeros((2, 3, 4), np.float32)
    means, variances = [], []
    for k in range(3):
        x = rng.standard_normal((5, 2, 3, 4)).astype(np.float32) * (k + 1) + k
        ha.train_dl_model_batch(m, [{"x": x[i], "t": z, "wt": z + 1} for i in range(5)])
        xd = x.astype(np.float64)
        means.append(xd.mean(axis=(0, 1, 2)))
        variances.append(xd.var(axis=(0, 1, 2)) * 30 / 29)
    np.testing.assert_allclose(ha.get_dl_model_layer_weights(m, "L", "batchnorm_mean"), np.mean(means, 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ha.get_dl_model_layer_weights(m, "L", "batchnorm_variance"), np.mean(variances, 0),
                               rtol=1e-5)


def test_dense_flattens_depth_height_width():
    out, data, m = run(lambda i: ha.create_dl_layer_dense(i["x"], "L", 5, [], []), {"x": [3, 2, 4]}, 2)
    w = ha.get_dl_model_layer_weights(m, "L", "weights").astype(np.float64)
    b = ha.get_dl_model_layer_weights(m, "L", "bias").astype(np.float64)
    assert w.shape == (5, 4 * 2 * 3)
    flat = nchw(data["x"]).reshape(2, -1)
    np.testing.assert_allclose(out[:, 0, 0, :], flat @ w.T + b, rtol=RTOL, atol=ATOL)


def test_softmax_over_depth():
    out, data, _ = run(lambda i: ha.create_dl_layer_softmax(i["x"], "L", [], []), {"x": [3, 2, 5]}, 2)
    x = data["x"].astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(axis=-1, keepdims=True), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis,npaxis", [("depth", 3), ("width", 2), ("height", 1), ("batch", 0)])
def test_concat(axis, npaxis):
    shapes = {"x": [3, 2, 2], "y": [3, 2, 2]}
    out, data, _ = run(lambda i: ha.create_dl_layer_concat([i["x"], i["y"]], "L", axis, [], []), shapes, 2)
    ref = np.concatenate([data["x"], data["y"]], axis=npaxis)
    if axis == "batch":  # output batch 4; apply returns the first batch_size samples
        ref = ref[:2]
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("op", ["sum", "product", "maximum", "minimum"])
def test_elementwise(op):
    shapes = {"x": [3, 2, 2], "y": [3, 2, 2], "z": [3, 2, 2]}
    coef = [0.5, -1.0, 2.0] if op == "sum" else []
    out, d, _ = run(lambda i: ha.create_dl_layer_elementwise([i["x"], i["y"], i["z"]], "L", op, coef, [], []),
                    shapes, 2)
    x, y, z = (d[k].astype(np.float64) for k in "xyz")
    ref = {"sum": 0.5 * x - y + 2 * z, "product": x * y * z, "maximum": np.maximum(np.maximum(x, y), z),
           "minimum": np.minimum(np.minimum(x, y), z)}[op]
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


def test_reshape_keeps_depth_height_width_order():
    out, d, _ = run(lambda i: ha.create_dl_layer_reshape(i["x"], "L", [6, 1, -1], [], []), {"x": [3, 2, 4]}, 2)
    assert out.shape == (2, 1, 6, 4)
    np.testing.assert_allclose(nchw(out).reshape(2, -1), nchw(d["x"]).reshape(2, -1))


def ref_zoom(x, oh, ow, bilinear, align):
    n, c, h, w = x.shape

    def src(o, i_, o_):
        if align:
            return o * (i_ - 1) / (o_ - 1) if o_ > 1 else 0.0
        return max((o + 0.5) * i_ / o_ - 0.5, 0.0)

    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            if not bilinear:
                si = min(int(round(i * (h - 1) / (oh - 1))) if align else int(np.floor(i * h / oh)), h - 1)
                sj = min(int(round(j * (w - 1) / (ow - 1))) if align else int(np.floor(j * w / ow)), w - 1)
                y[:, :, i, j] = x[:, :, si, sj]
                continue
            sy, sx = src(i, h, oh), src(j, w, ow)
            y0, x0 = min(int(sy), h - 1), min(int(sx), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            ly, lx = sy - y0, sx - x0
            y[:, :, i, j] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                             + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return y


@pytest.mark.parametrize("interp,align", [("bilinear", "false"), ("bilinear", "true"), ("nearest_neighbor", "false")])
def test_zoom(interp, align):
    out, d, _ = run(lambda i: ha.create_dl_layer_zoom_factor(i["x"], "L", 1.5, 2.0, interp, align, [], []),
                    {"x": [4, 3, 2]}, 2)
    assert out.shape == (2, 6, 6, 2)
    np.testing.assert_allclose(out, nhwc(ref_zoom(nchw(d["x"]), 6, 6, interp == "bilinear", align == "true")),
                               rtol=RTOL, atol=ATOL)
    out, d, _ = run(lambda i: ha.create_dl_layer_zoom_size(i["x"], "L", 3, 5, interp, align, [], []),
                    {"x": [7, 4, 2]}, 2)
    np.testing.assert_allclose(out, nhwc(ref_zoom(nchw(d["x"]), 5, 3, interp == "bilinear", align == "true")),
                               rtol=RTOL, atol=ATOL)


def test_depth_max():
    arg, val = ha.create_dl_layer_depth_max_s(ha.create_dl_layer_input("x", [3, 2, 5], [], []), "L",
                                              "argmax_and_value", [], [])
    m = ha.create_dl_model([arg, val])
    x = rng.standard_normal((2, 3, 5)).astype(np.float32)
    r = [ha.as_python_dict(r) for r in ha.apply_dl_model(m, [{"x": x}], ["L", "L_value"])][0]
    np.testing.assert_array_equal(r["L"][..., 0], np.argmax(x, axis=-1))
    np.testing.assert_allclose(r["L_value"][..., 0], x.max(axis=-1))


def loss_value(make, shapes, samples):
    inputs = {n: ha.create_dl_layer_input(n, s, [], []) for n, s in shapes.items()}
    m = ha.create_dl_model(make(inputs))
    ha.set_dl_model_param(m, "batch_size", len(samples))
    ha.set_dl_model_param(m, "learning_rate", 1e-30)
    return ha.as_python_dict_s(ha.train_dl_model_batch(m, samples))


def test_loss_values():
    n = 3
    x = rng.standard_normal((n, 2, 3, 4)).astype(np.float32)
    t = rng.standard_normal((n, 2, 3, 4)).astype(np.float32)
    w = rng.uniform(0.5, 2, (n, 2, 3, 4)).astype(np.float32)
    xd, td, wd = (a.astype(np.float64) for a in (x, t, w))
    sh = {"x": [3, 2, 4], "t": [3, 2, 4], "w": [3, 2, 4]}
    s = [{"x": x[i], "t": t[i], "w": w[i]} for i in range(n)]
    r = loss_value(lambda i: ha.create_dl_layer_loss_distance(i["x"], i["t"], i["w"], "d", "l2", 2.0, [], []), sh, s)
    assert r["d"] == pytest.approx(2.0 * (wd * (xd - td) ** 2).sum() / n, rel=1e-5)
    r = loss_value(lambda i: ha.create_dl_layer_loss_distance(i["x"], i["t"], i["w"], "d", "l1", 1.0, [], []), sh, s)
    assert r["d"] == pytest.approx((wd * np.abs(xd - td)).sum() / n, rel=1e-5)
    beta = 0.7
    a = np.abs(xd - td)
    hub = np.where(a < beta, 0.5 * a ** 2 / beta, a - 0.5 * beta)
    r = loss_value(lambda i: ha.create_dl_layer_loss_huber(i["x"], i["t"], i["w"], [], "h", 1.0, beta, [], []), sh, s)
    assert r["h"] == pytest.approx((wd * hub).sum() / n, rel=1e-5)
    assert r["total_loss"] == pytest.approx(r["h"], rel=1e-12)
    # Cross-entropy with per-pixel weights: mean over samples and pixels of -w log p_target.
    p = np.exp(xd) / np.exp(xd).sum(axis=-1, keepdims=True)
    ids = rng.integers(0, 4, (n, 2, 3, 1))
    wp = rng.uniform(0.5, 2, (n, 2, 3, 1))
    sh2 = {"x": [3, 2, 4], "t": [3, 2, 1], "w": [3, 2, 1]}
    s2 = [{"x": x[i], "t": ids[i].astype(np.float32), "w": wp[i].astype(np.float32)} for i in range(n)]
    r = loss_value(lambda i: ha.create_dl_layer_loss_cross_entropy(
        ha.create_dl_layer_softmax(i["x"], "sm", [], []), i["t"], i["w"], "ce", 1.0, [], []), sh2, s2)
    pt = np.take_along_axis(p, ids, axis=-1)
    assert r["ce"] == pytest.approx((-wp * np.log(pt)).sum() / (n * 6), rel=1e-5)
    # Sigmoid focal loss with alpha per class, ids outside [0, C) meaning background, normalised by batch.
    alpha = np.array([0.25, 0.5, 0.6, 0.9])
    ids_f = rng.integers(-1, 4, (n, 2, 3, 1))
    onehot = (np.arange(4) == ids_f).astype(np.float64)
    sig = 1 / (1 + np.exp(-xd))
    pt = np.where(onehot == 1, sig, 1 - sig)
    at = np.where(onehot == 1, alpha, 1 - alpha)
    fl = -at * (1 - pt) ** 2 * np.log(pt)
    s3 = [{"x": x[i], "t": ids_f[i].astype(np.float32), "w": np.ones((2, 3, 1), np.float32)} for i in range(n)]
    r = loss_value(lambda i: ha.create_dl_layer_loss_focal(i["x"], i["t"], i["w"], [], "f", 1.0, 2.0, alpha.tolist(),
                                                           "focal_binary", [], []), sh2, s3)
    assert r["f"] == pytest.approx(fl.sum() / n, rel=1e-5)
