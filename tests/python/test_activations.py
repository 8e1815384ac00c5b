"""The activation layer's HALCON activation types: forward values against numpy float64 references written
here from the mathematical (ONNX operator) definitions, finite-difference gradient checks of every
differentiable type, the exact zero gradient of the step functions, and the layer's parameter validation.
Inputs stay inside each function's domain; gradient checks keep every sample at least 0.05 away from kinks
and jumps (eps = 1e-3, so a central difference never straddles one)."""

import math

import numpy as np
import pytest

import opendl as ha
from gradcheck import Probe

SHAPE = [5, 4, 3]  # width 5, height 4, depth 3: samples are (4, 5, 3) arrays
BATCH = 2
# Forward tolerance: the layer evaluates every function in double and stores float32, so an element is off
# by at most half a float32 ulp (relative 6e-8) plus the float32 rounding of parameters such as selu's alpha
# (relative ~3e-8); rtol 1e-6 leaves a margin of ten while any wrong constant or branch is off by far more.
# atol 1e-7 covers outputs crossing zero on the fused relu/sigmoid/tanh path, which computes in float32.
RTOL, ATOL = 1e-6, 1e-7

SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805  # Klambauer et al. 2017; ONNX Selu defaults
erf = np.vectorize(math.erf, otypes=[float])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)


def elu(x, a):
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))


def round_half_even(x):
    # ONNX Round: nearest integer, exact halves to the even neighbour (written out rather than np.rint).
    f = np.floor(x)
    d = x - f
    up = (d > 0.5) | ((d == 0.5) & (np.mod(f, 2) == 1))
    return f + up


# id -> (activation_type, gen names, gen values, float64 reference, input range, kinks/jumps, differentiable).
# The input range is (lo, hi) for uniform samples; kinks are the points gradient checks keep away from and
# forward checks deliberately include.
CASES = {
    "abs": ("abs", [], [], np.abs, (-3, 3), [0.0], True),
    "acos": ("acos", [], [], np.arccos, (-0.95, 0.95), [], True),
    "asin": ("asin", [], [], np.arcsin, (-0.95, 0.95), [], True),
    "atan": ("atan", [], [], np.arctan, (-4, 4), [], True),
    "ceil": ("ceil", [], [], np.ceil, (-3, 3), [-2.0, -1.0, 0.0, 1.0, 2.0], False),
    "celu": ("celu", [], [], lambda x: np.maximum(0, x) + np.minimum(0, 1.0 * np.expm1(x / 1.0)), (-4, 3), [0.0],
             True),
    "celu_alpha_0.5": ("celu", ["alpha"], [0.5],
                       lambda x: np.maximum(0, x) + np.minimum(0, 0.5 * np.expm1(x / 0.5)), (-4, 3), [0.0], True),
    "clip": ("clip", ["min", "max"], [-0.5, 0.7], lambda x: np.minimum(np.maximum(x, -0.5), 0.7), (-2, 2),
             [-0.5, 0.7], True),
    "clip_defaults": ("clip", [], [], lambda x: x, (-3, 3), [], True),  # bounds +-FLT_MAX: identity
    "cos": ("cos", [], [], np.cos, (-4, 4), [], True),
    "cosh": ("cosh", [], [], np.cosh, (-3, 3), [], True),
    "elu": ("elu", [], [], lambda x: elu(x, 1.0), (-4, 3), [0.0], True),
    "elu_alpha_0.5": ("elu", ["alpha"], [0.5], lambda x: elu(x, 0.5), (-4, 3), [0.0], True),
    "erf": ("erf", [], [], erf, (-3, 3), [], True),
    "exp": ("exp", [], [], np.exp, (-3, 3), [], True),
    "floor": ("floor", [], [], np.floor, (-3, 3), [-2.0, -1.0, 0.0, 1.0, 2.0], False),
    "gelu": ("gelu", [], [], lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))), (-4, 4), [], True),
    "gelu_none": ("gelu", ["approximate"], ["none"], lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2))), (-4, 4), [],
                  True),
    "gelu_tanh": ("gelu", ["approximate"], ["tanh"],
                  lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), (-4, 4), [], True),
    "hard_sigmoid": ("hard_sigmoid", [], [], lambda x: np.clip(0.2 * x + 0.5, 0, 1), (-5, 5), [-2.5, 2.5], True),
    "hard_sigmoid_0.3_0.4": ("hard_sigmoid", ["alpha", "beta"], [0.3, 0.4], lambda x: np.clip(0.3 * x + 0.4, 0, 1),
                             (-4, 4), [-4 / 3, 2.0], True),
    "hard_swish": ("hard_swish", [], [], lambda x: x * np.maximum(0, np.minimum(1, x / 6 + 0.5)), (-5, 5),
                   [-3.0, 3.0], True),
    "log": ("log", [], [], np.log, (0.2, 4), [], True),
    "mish": ("mish", [], [], lambda x: x * np.tanh(softplus(x)), (-4, 4), [], True),
    "neg": ("neg", [], [], np.negative, (-3, 3), [], True),
    "reciprocal": ("reciprocal", [], [], lambda x: 1 / x, (0.2, 4), [], True),
    "reciprocal_negative": ("reciprocal", [], [], lambda x: 1 / x, (-4, -0.2), [], True),
    "relu": ("relu", [], [], lambda x: np.maximum(x, 0), (-3, 3), [0.0], True),
    "relu_upper_bound_none": ("relu", ["upper_bound"], ["none"], lambda x: np.maximum(x, 0), (-3, 3), [0.0], True),
    "relu_upper_bound_6": ("relu", ["upper_bound"], [6], lambda x: np.minimum(np.maximum(x, 0), 6), (-8, 9),
                           [0.0, 6.0], True),
    "relu_leaky_0.1": ("relu", ["leaky_relu"], [0.1], lambda x: np.where(x > 0, x, 0.1 * x), (-3, 3), [0.0], True),
    "relu_leaky_0.1_upper_6": ("relu", ["leaky_relu", "upper_bound"], [0.1, 6],
                               lambda x: np.where(x > 0, np.minimum(x, 6), 0.1 * x), (-8, 9), [0.0, 6.0], True),
    "round": ("round", [], [], round_half_even, (-3, 3), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], False),
    "selu": ("selu", [], [], lambda x: SELU_GAMMA * elu(x, SELU_ALPHA), (-4, 3), [0.0], True),
    "selu_custom": ("selu", ["alpha", "gamma"], [1.5, 2.0], lambda x: 2.0 * elu(x, 1.5), (-4, 3), [0.0], True),
    "sigmoid": ("sigmoid", [], [], sigmoid, (-6, 6), [], True),
    "sign": ("sign", [], [], np.sign, (-3, 3), [0.0], False),
    "sin": ("sin", [], [], np.sin, (-4, 4), [], True),
    "sinh": ("sinh", [], [], np.sinh, (-3, 3), [], True),
    "softplus": ("softplus", [], [], lambda x: np.log(1 + np.exp(x)), (-6, 6), [], True),
    "softsign": ("softsign", [], [], lambda x: x / (1 + np.abs(x)), (-4, 4), [], True),
    "sqrt": ("sqrt", [], [], np.sqrt, (0.2, 4), [], True),
    "swish": ("swish", [], [], lambda x: x * sigmoid(x), (-6, 6), [], True),
    "tan": ("tan", [], [], np.tan, (-1.2, 1.2), [], True),
    "tanh": ("tanh", [], [], np.tanh, (-4, 4), [], True),
}
DIFFERENTIABLE = [k for k, c in CASES.items() if c[6]]
STEPS = [k for k, c in CASES.items() if not c[6]]


def layer(inputs, case):
    t, names, values = CASES[case][:3]
    return ha.create_dl_layer_activation(inputs["x"], "L", t, names, values)


def samples_for(case, seed, with_kinks):
    """(BATCH, 4, 5, 3) float32 inputs uniform over the case's range. with_kinks: the first elements are the
    kinks themselves (forward); otherwise every value is moved at least 0.05 away from each kink."""
    lo, hi = CASES[case][4]
    kinks = CASES[case][5]
    x = np.random.default_rng(seed).uniform(lo, hi, (BATCH, SHAPE[1], SHAPE[0], SHAPE[2]))
    flat = x.reshape(-1)
    if with_kinks:
        flat[:len(kinks)] = kinks
    else:
        for k in kinks:  # kinks are >= 0.25 apart, so moving away from one never lands near another
            d = flat - k
            near = np.abs(d) < 0.05
            flat[near] = k + np.where(d[near] >= 0, 1.0, -1.0) * (0.05 + np.abs(d[near]))
    return x.astype(np.float32)


def apply(case, x):
    inp = {"x": ha.create_dl_layer_input("x", SHAPE, [], [])}
    m = ha.create_dl_model(layer(inp, case))
    ha.set_dl_model_param(m, "batch_size", BATCH)
    res = [ha.as_python_dict(r) for r in ha.apply_dl_model(m, [{"x": x[i]} for i in range(BATCH)], ["L"])]
    return np.stack([r["L"] for r in res]), m


# --- forward values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_forward_matches_float64_reference(case):
    x = samples_for(case, seed=11, with_kinks=True)
    out, _ = apply(case, x)
    assert out.shape == (BATCH, SHAPE[1], SHAPE[0], SHAPE[2]) and out.dtype == np.float32
    ref = CASES[case][3](x.astype(np.float64))
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


def test_step_functions_at_integers_and_halves():
    # Exact values (no tolerance: every result is a small integer): floor/ceil toward -inf/+inf, round half to
    # even as ONNX Round, sign(0) = 0.
    v = np.array([-2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.5, 3.5, -0.3, 0.7, 2.2, -2.7], np.float32)
    x = np.zeros((BATCH, SHAPE[1], SHAPE[0], SHAPE[2]), np.float32)
    x.reshape(-1)[:v.size] = v
    expected = {
        "floor": [-3, -2, -2, -1, -1, 0, 0, 1, 1, 2, 3, -1, 0, 2, -3],
        "ceil": [-2, -2, -1, -1, -0, 0, 1, 1, 2, 3, 4, -0, 1, 3, -2],
        "round": [-2, -2, -2, -1, -0, 0, 0, 1, 2, 2, 4, -0, 1, 2, -3],
        "sign": [-1, -1, -1, -1, -1, 0, 1, 1, 1, 1, 1, -1, 1, 1, -1],
    }
    for case, e in expected.items():
        out, _ = apply(case, x)
        np.testing.assert_array_equal(out.reshape(-1)[:v.size], np.array(e, np.float32), err_msg=case)


def test_parameters_change_the_result():
    # Guards against a gen param being accepted but ignored: each variant differs from its default on the
    # same inputs by more than 1e-4, a hundred times the forward tolerance (the closest pair, gelu and its tanh
    # approximation, differ by up to ~5e-4 on these inputs).
    x = samples_for("elu", seed=5, with_kinks=False)
    for a, b in [("elu", "elu_alpha_0.5"), ("celu", "celu_alpha_0.5"), ("hard_sigmoid", "hard_sigmoid_0.3_0.4"),
                 ("relu", "relu_leaky_0.1"), ("selu", "selu_custom"), ("gelu", "gelu_tanh"), ("clip_defaults", "clip")]:
        assert np.abs(apply(a, x)[0] - apply(b, x)[0]).max() > 1e-4, (a, b)
    x6 = x * 3  # reaches beyond 6
    assert np.abs(apply("relu", x6)[0] - apply("relu_upper_bound_6", x6)[0]).max() > 1e-3


def test_explicit_default_alpha_equals_the_types_own():
    x = samples_for("selu", seed=6, with_kinks=False)
    for t in ("elu", "celu", "selu", "hard_sigmoid"):
        inp = {"x": ha.create_dl_layer_input("x", SHAPE, [], [])}
        m = ha.create_dl_model(ha.create_dl_layer_activation(inp["x"], "L", t, ["alpha"], ["default"]))
        ha.set_dl_model_param(m, "batch_size", BATCH)
        out = np.stack([ha.as_python_dict(r)["L"]
                        for r in ha.apply_dl_model(m, [{"x": x[i]} for i in range(BATCH)], ["L"])])
        np.testing.assert_array_equal(out, apply(t, x)[0], err_msg=t)


# --- gradients -----------------------------------------------------------------------------------------------

# Gradient tolerance as in test_gradients.py: 1e-2 of the gradient's scale. Central differences with eps 1e-3
# have truncation error ~eps^2 |f'''| / 6 (at most ~1e-4 relative here: tan at 1.2, reciprocal at 0.2) plus
# float32 rounding of the outputs and of x +- eps (~1e-3 relative); a wrong derivative is off by O(1).


@pytest.mark.parametrize("case", DIFFERENTIABLE)
def test_gradient(case):
    data = {"x": samples_for(case, seed=21, with_kinks=False)}
    p = Probe(lambda i: layer(i, case), {"x": SHAPE}, batch=BATCH, input_data=data)
    p.check(n_check=12)


@pytest.mark.parametrize("case", DIFFERENTIABLE)
def test_input_gradient_matches_analytic_derivative(case):
    # Every element (not only the 12 sampled by the finite-difference check): dL/dx = dL/dy * f'(x), with f'
    # from central differences of the float64 reference (step 1e-6, error ~1e-12 * |f'''|), so a wrong
    # derivative in a region the random sample missed (e.g. one side of a kink) still fails.
    x = samples_for(case, seed=22, with_kinks=False)
    p = Probe(lambda i: layer(i, case), {"x": SHAPE}, batch=BATCH, input_data={"x": x})
    p.loss({})
    dy = ha.get_dl_model_layer_gradients(p.model, "L").astype(np.float64)
    dx = ha.get_dl_model_layer_gradients(p.model, "x").astype(np.float64)
    f, xd, h = CASES[case][3], x.astype(np.float64), 1e-6
    deriv = (f(xd + h) - f(xd - h)) / (2 * h)
    # float32 storage of dx and of dy (relative 6e-8 each), f' itself evaluated in double: 1e-5 is ample.
    np.testing.assert_allclose(dx, dy * deriv, rtol=1e-5, atol=1e-6 * np.abs(dy * deriv).max())


@pytest.mark.parametrize("a,b", [("mish", "elu_alpha_0.5"), ("tanh", "sigmoid"), ("tan", "relu"),
                                 ("relu_upper_bound_6", "swish")])
def test_gradient_accumulates_over_two_consumers(a, b):
    # x feeds two activation layers whose outputs are summed: x's gradient is the sum of both backward passes,
    # so whichever runs second must accumulate (on the fused relu/sigmoid/tanh path and the generic one).
    def build(i):
        ta, na, va = CASES[a][:3]
        tb, nb, vb = CASES[b][:3]
        return ha.create_dl_layer_elementwise([ha.create_dl_layer_activation(i["x"], "A", ta, na, va),
                                               ha.create_dl_layer_activation(i["x"], "B", tb, nb, vb)],
                                              "L", "sum", [], [], [])
    x = np.clip(samples_for(a, seed=25, with_kinks=False), -1.2, 1.2)  # inside tan's range
    x = np.where(np.abs(x) < 0.05, 0.3, x).astype(np.float32)  # away from relu's kink
    Probe(build, {"x": SHAPE}, batch=BATCH, input_data={"x": x}).check(n_check=20)


@pytest.mark.parametrize("case", STEPS)
def test_step_function_gradient_is_exactly_zero(case):
    # Inputs everywhere, including integers and halves: floor/ceil/round/sign are piecewise constant, and their
    # derivative is defined as 0 (also at the jumps, as ONNX exporters treat them).
    x = samples_for(case, seed=23, with_kinks=True)
    x.reshape(-1)[-6:] = [-2.0, -1.0, 0.5, 1.0, 1.5, 0.0]
    p = Probe(lambda i: layer(i, case), {"x": SHAPE}, batch=BATCH, input_data={"x": x})
    p.loss({})
    dy = ha.get_dl_model_layer_gradients(p.model, "L")
    assert np.abs(dy).max() > 0  # the loss does send a gradient into the layer
    assert np.all(ha.get_dl_model_layer_gradients(p.model, "x") == 0)
    # And the finite differences agree away from the jumps.
    data = {"x": samples_for(case, seed=24, with_kinks=False)}
    if case in ("floor", "ceil"):  # integers are their jumps: use x = k + 0.5 +- 0.4
        data["x"] = (np.floor(data["x"]) + np.random.default_rng(1).uniform(0.1, 0.9, data["x"].shape)).astype(
            np.float32)
    Probe(lambda i: layer(i, case), {"x": SHAPE}, batch=BATCH, input_data=data).check()


# --- parameters and errors -----------------------------------------------------------------------------------


def make(t, names, values):
    return ha.create_dl_layer_activation(ha.create_dl_layer_input("x", SHAPE, [], []), "L", t, names, values)


def error_code(t, names, values):
    with pytest.raises(ha.HOperatorError) as e:
        make(t, names, values)
    return e.value.error_code


def test_unknown_activation_type_is_a_wrong_value_of_parameter_3():
    assert error_code("leaky", [], []) == 1303
    assert error_code("ReLU", [], []) == 1303  # names are case-sensitive, as in HALCON


@pytest.mark.parametrize("names,values", [
    (["upper_bound"], [0]),
    (["upper_bound"], [0.0]),
    (["upper_bound"], [-6]),
    (["upper_bound"], ["six"]),
])
def test_relu_upper_bound_must_be_positive_or_none(names, values):
    assert error_code("relu", names, values) == 7914


def test_clip_min_above_max_is_rejected():
    assert error_code("clip", ["min", "max"], [1.0, 0.5]) == 7914
    make("clip", ["min", "max"], [0.5, 0.5])  # min == max is a valid (constant) clip


def test_celu_alpha_zero_is_rejected():
    assert error_code("celu", ["alpha"], [0]) == 7914
    assert error_code("celu", ["alpha"], [0.0]) == 7914
    make("elu", ["alpha"], [0.0])  # elu with alpha 0 is well defined (a relu)


@pytest.mark.parametrize("names,values", [(["approximate"], ["fast"]), (["alpha"], ["auto"])])
def test_invalid_gen_values(names, values):
    assert error_code("gelu" if names == ["approximate"] else "elu", names, values) == 7914


def test_unknown_gen_param_is_7911():
    assert error_code("relu", ["slope"], [0.1]) == 7911
    assert error_code("tanh", ["upper_bounds"], [6]) == 7911


def test_get_dl_layer_param_returns_stored_gen_params():
    l = make("relu", ["upper_bound", "leaky_relu"], [6, 0.1])
    assert ha.get_dl_layer_param(l, "activation_type") == ["relu"]
    assert ha.get_dl_layer_param(l, "upper_bound") == [6]
    assert ha.get_dl_layer_param(l, "leaky_relu") == [pytest.approx(0.1, rel=1e-15)]
    assert ha.get_dl_layer_param(l, "shape") == SHAPE
    l = make("relu", [], [])
    assert ha.get_dl_layer_param(l, "upper_bound") == ["none"]
    assert ha.get_dl_layer_param(l, "leaky_relu") == [0]
    l = make("clip", ["min", "max"], [-0.5, 0.7])
    assert ha.get_dl_layer_param(l, "min") == [-0.5] and ha.get_dl_layer_param(l, "max") == [0.7]
    l = make("hard_sigmoid", ["alpha", "beta"], [0.3, 0.4])
    assert ha.get_dl_layer_param(l, "alpha") == [0.3] and ha.get_dl_layer_param(l, "beta") == [0.4]
    l = make("selu", [], [])
    assert ha.get_dl_layer_param(l, "alpha") == ["default"]
    assert ha.get_dl_layer_param(l, "gamma") == [pytest.approx(SELU_GAMMA, rel=1e-15)]
    l = make("gelu", ["approximate"], ["tanh"])
    assert ha.get_dl_layer_param(l, "approximate") == ["tanh"]
    assert ha.get_dl_layer_param_s(l, "activation_type") == "gelu"


def test_model_layer_params_and_serialization_keep_the_activation():
    x = samples_for("relu_leaky_0.1_upper_6", seed=31, with_kinks=True)
    out, m = apply("relu_leaky_0.1_upper_6", x)
    assert ha.get_dl_model_layer_param(m, "L", "upper_bound") == [6]
    assert ha.get_dl_model_layer_param(m, "L", "leaky_relu") == [pytest.approx(0.1, rel=1e-15)]
    m2 = ha.deserialize_dl_model(ha.serialize_dl_model(m))
    assert ha.get_dl_model_layer_param(m2, "L", "upper_bound") == [6]
    ha.set_dl_model_param(m2, "batch_size", BATCH)
    out2 = np.stack([ha.as_python_dict(r)["L"]
                     for r in ha.apply_dl_model(m2, [{"x": x[i]} for i in range(BATCH)], ["L"])])
    np.testing.assert_array_equal(out2, out)
