"""Finite-difference gradient checker used by the layer tests.

A layer under test sits between input layers and a distance loss (sum of squared differences to a random
target, divided by the batch size), so its analytic gradients are those of a random projection of its
output. Analytic gradients come from one train_dl_model_batch step (input gradients via
get_dl_model_layer_gradients, weight gradients via get_dl_model_layer_weights(..., '<type>_gradient')).
Numerical gradients are central differences of total_loss, which the engine accumulates in float64, with
the weights restored before every evaluation so each loss is taken at the same parameters.
"""

from __future__ import annotations

import numpy as np

import opendl as ha


class Probe:
    """A model input -> layer(s) -> loss_distance(l2) -> total_loss, for gradient checks."""

    def __init__(self, build, input_shapes, batch, seed=0, input_data=None):
        # input_shapes: {name: [width, height, depth]}; build(inputs: dict name->layer handle) -> layer handle.
        self.rng = np.random.default_rng(seed)
        self.inputs = {n: ha.create_dl_layer_input(n, list(s), [], []) for n, s in input_shapes.items()}
        self.out = build(self.inputs)
        w, h, d = ha.get_dl_layer_param(self.out, "shape")
        t = ha.create_dl_layer_input("t", [w, h, d], [], [])
        wt = ha.create_dl_layer_input("wt", [w, h, d], [], [])
        loss = ha.create_dl_layer_loss_distance(self.out, t, wt, "loss", "l2", 1.0, [], [])
        self.model = ha.create_dl_model(loss)
        ha.set_dl_model_param(self.model, "batch_size", batch)
        # A tiny learning rate; the weights are restored after every step anyway.
        ha.set_dl_model_param(self.model, "learning_rate", 1e-30)
        ha.set_dl_model_param(self.model, "momentum", 0.0)
        # every layer's output gradient (input layers included) stays readable after a step
        ha.set_dl_model_param(self.model, "keep_layer_gradients", "true")
        self.batch = batch
        self.samples = []
        for i in range(batch):
            s = {}
            for n, (sw, sh, sd) in input_shapes.items():
                if input_data is not None and n in input_data:
                    s[n] = input_data[n][i]
                else:
                    s[n] = self.rng.standard_normal((sh, sw, sd)).astype(np.float32)
            s["t"] = self.rng.standard_normal((h, w, d)).astype(np.float32)
            s["wt"] = self.rng.uniform(0.5, 1.5, (h, w, d)).astype(np.float32)
            self.samples.append(s)
        self.layer_name = ha.get_dl_layer_param_s(self.out, "name")

    def blobs(self, layer):
        out = {}
        for t in ("weights", "bias"):
            try:
                out[t] = ha.get_dl_model_layer_weights(self.model, layer, t).copy()
            except ha.HOperatorError:
                pass
        return out

    def loss(self, restore):
        res = ha.as_python_dict_s(ha.train_dl_model_batch(self.model, self.samples))
        for (layer, t), v in restore.items():
            ha.set_dl_model_layer_weights(v, self.model, layer, t)
        return res["total_loss"]

    def check(self, layers_with_weights=(), eps=1e-3, tol=1e-2, n_check=12, inputs=None):
        """Compares analytic and central-difference gradients for inputs and weights; returns the worst
        relative error (max |num - ana| over the checked entries / max |ana| of that tensor)."""
        restore = {}
        for layer in layers_with_weights:
            for t, v in self.blobs(layer).items():
                restore[(layer, t)] = v
        self.loss(restore)  # analytic gradients of this step (weights restored afterwards)
        grads = {}
        for n in (inputs if inputs is not None else self.inputs):
            g = ha.get_dl_model_layer_gradients(self.model, n)  # (N, H, W, C)
            grads[("input", n)] = g
        for (layer, t) in restore:
            grads[(layer, t)] = ha.get_dl_model_layer_weights(self.model, layer, t + "_gradient").copy()
        worst = 0.0
        for key, ana in grads.items():
            flat = ana.reshape(-1)
            idx = self.rng.choice(flat.size, size=min(n_check, flat.size), replace=False)
            num = np.zeros(len(idx))
            for k, i in enumerate(idx):
                vals = []
                for sign in (+1, -1):
                    if key[0] == "input":
                        b, rest = np.unravel_index(i, ana.shape)[0], np.unravel_index(i, ana.shape)[1:]
                        x = self.samples[b][key[1]]
                        old = x[rest]
                        x[rest] = old + sign * eps
                        vals.append(self.loss(restore))
                        x[rest] = old
                    else:
                        w = restore[key].copy()
                        w.reshape(-1)[i] += sign * eps
                        ha.set_dl_model_layer_weights(w, self.model, key[0], key[1])
                        vals.append(self.loss(restore))
                num[k] = (vals[0] - vals[1]) / (2 * eps)
            scale = max(np.abs(flat).max(), 1e-6)
            err = np.abs(num - flat[idx]).max() / scale
            assert err < tol, f"{key}: gradient mismatch {err:.3g} (numeric {num}, analytic {flat[idx]})"
            worst = max(worst, err)
        print(f"gradcheck worst relative error {worst:.2e}")
        return worst
