"""Training memory planned by liveness (graph/network.h, Network::set_keep_gradients): by default the output
gradients of the layers share one arena, each alive from the backward step of its last consumer to its own;
model parameter 'keep_layer_gradients' 'true' gives every layer its own gradient buffer again, for
get_dl_model_layer_gradients.

Sharing changes where values are stored, not how they are computed: every kernel runs on the same inputs in the
same order, so training must give bitwise the same losses, weights and weight gradients either way; a lifetime
planned too short (a gradient overwritten before its last reader, or accumulation into a stale buffer) changes
them by O(1)."""

from __future__ import annotations

import numpy as np
import pytest

import opendl as ha
from test_blocked_layouts import batches, build

WEIGHTED = ("conv1", "bn1", "conv2", "bn2", "dw", "conv3", "fc")


def train(model, steps=3):
    losses = [ha.as_python_dict_s(ha.train_dl_model_batch(model, b))["total_loss"] for b in batches(steps)]
    weights = {(l, t): ha.get_dl_model_layer_weights(model, l, t).copy()
               for l in WEIGHTED for t in ("weights", "weights_gradient", "bias", "bias_gradient")
               if not (l == "conv2" and t.startswith("bias"))}
    return losses, weights


def layer_floats(model):
    """Floats of every layer output except the input layers' (= of all gradient buffers a model keeping them
    holds beyond the inputs')."""
    names = ha.get_dl_model_param(model, "layer_names")
    inputs = {"image", "image_label_id", "weights"}
    return sum(ha.get_dl_model_layer_activations(model, n).size for n in names if n not in inputs)


@pytest.mark.parametrize("blocked, depthwise", [(True, True), (False, False)])
def test_shared_gradient_buffers_train_exactly_like_kept_ones(blocked, depthwise):
    planned = build(blocked, depthwise=depthwise)
    kept = build(blocked, depthwise=depthwise)
    assert ha.get_dl_model_param(planned, "keep_layer_gradients") == ["false"]
    ha.set_dl_model_param(kept, "keep_layer_gradients", "true")
    assert ha.get_dl_model_param(kept, "keep_layer_gradients") == ["true"]
    (l0, w0), (l1, w1) = train(kept), train(planned)
    assert l1 == l0 and len(set(l0)) == len(l0)
    for k in w0:
        np.testing.assert_array_equal(w1[k], w0[k], err_msg=str(k))


def test_shared_gradient_buffers_take_less_memory():
    planned, kept = build(True), build(True)
    ha.set_dl_model_param(kept, "keep_layer_gradients", "true")
    for m in (planned, kept):
        ha.train_dl_model_batch(m, batches(1)[0])
    b_planned, b_kept = (m.core("test").buffer_bytes() for m in (planned, kept))
    # Kept: one gradient per layer (plus the inputs'). Planned: at most the three largest alive at once in this
    # network (a residual block: the sum's gradient, both branch gradients), so at least the rest is saved.
    sizes = sorted((ha.get_dl_model_layer_activations(planned, n).size
                    for n in ha.get_dl_model_param(planned, "layer_names")
                    if n not in ("image", "image_label_id", "weights")), reverse=True)
    assert b_kept - b_planned >= 4 * (layer_floats(planned) - sum(sizes[:3])), (b_kept, b_planned)
    # and switching back gives the kept size again
    ha.set_dl_model_param(planned, "keep_layer_gradients", "true")
    assert planned.core("test").buffer_bytes() == b_kept


def test_layer_gradients_are_readable_only_when_kept():
    model = build(True)
    ha.train_dl_model_batch(model, batches(1)[0])
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_layer_gradients(model, "bn1")
    assert e.value.error_code == 7788 and "keep_layer_gradients" in str(e.value) and "'bn1'" in str(e.value)
    # weight gradients stay readable (they live in the parameter-gradient arena)
    assert np.abs(ha.get_dl_model_layer_weights(model, "conv1", "weights_gradient")).sum() > 0

    ha.set_dl_model_param(model, "keep_layer_gradients", "true")
    with pytest.raises(ha.HOperatorError) as e:       # switching dropped the last step's buffers
        ha.get_dl_model_layer_gradients(model, "bn1")
    assert e.value.error_code == 7788 and "no training step" in str(e.value)
    ha.train_dl_model_batch(model, batches(1)[0])
    g = ha.get_dl_model_layer_gradients(model, "bn1")
    assert g.shape == (6, 12, 12, 16) and np.abs(g).sum() > 0
    gi = ha.get_dl_model_layer_gradients(model, "image")  # input layers too, when kept
    assert gi.shape == (6, 12, 12, 3) and np.abs(gi).sum() > 0
    # layers no gradient flows through (the label input, the loss itself) read as zeros
    assert not ha.get_dl_model_layer_gradients(model, "image_label_id").any()
    assert not ha.get_dl_model_layer_gradients(model, "loss").any()
    # without keeping, input gradients are not computed
    ha.set_dl_model_param(model, "keep_layer_gradients", "false")
    ha.train_dl_model_batch(model, batches(1)[0])
    with pytest.raises(ha.HOperatorError) as e:
        ha.get_dl_model_layer_gradients(model, "image")
    assert e.value.error_code == 7788 and "input layer 'image'" in str(e.value)
    ha.set_dl_model_param(model, "keep_layer_gradients", "true")

    with pytest.raises(ha.HOperatorError) as e:
        ha.set_dl_model_param(model, "keep_layer_gradients", "yes")
    assert e.value.error_code == 1303 and "'keep_layer_gradients'" in str(e.value)
    assert ha.get_dl_model_param(model, "keep_layer_gradients") == ["true"]
