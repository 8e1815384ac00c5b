// Base of the loss layers: a scalar output (shape 1 x 1 x 1, batch 1) holding the normalised loss, a
// loss_weight for total_loss, and no gradient towards target, weight or normalisation inputs. The value is
// computed where the data lives (no host round trip).
#pragma once

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {

// The normaliser of the Huber and focal losses: the sum of the values of input idx (at least 1) when the layer
// has that input, else the batch size (huber.cpp).
LossNorm loss_normaliser(const LayerIO& io, size_t idx);

class LossLayer : public Layer {
 public:
  bool is_loss() const override { return true; }
  double loss_weight() const override { return real_param("loss_weight"); }
  bool input_needs_grad(size_t i) const override { return i == 0; }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    check_shapes(in);
    return Shape4{1, 1, 1, 1};
  }
  virtual void check_shapes(const std::vector<Shape4>& in) const = 0;
  // Requires input i to have the input's shape, or (if allow_per_sample) depth 1 / one value per sample.
  void require_like(const std::vector<Shape4>& in, size_t i, const char* what, bool allow_depth1,
                    bool allow_per_sample) const {
    const Shape4& x = in[0];
    const Shape4& t = in[i];
    bool same = t == x;
    bool depth1 = allow_depth1 && t.n == x.n && t.c == 1 && t.h == x.h && t.w == x.w;
    bool per_sample = allow_per_sample && t.n == x.n && t.c == 1 && t.h == 1 && t.w == 1;
    if (!same && !depth1 && !per_sample)
      fail(err::kInvalidShape, "layer '" + name() + "': the " + what + " input has shape " + t.str() +
                                   ", which does not fit the input shape " + x.str());
  }
  // Forward writes the loss value to y (on the device); backward writes the input's gradient only.
  void forward(LayerIO& io) override { run(io, false); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) run(io, true);
  }
  // One backend call: unless grad, the value (to io.y, and to the training step's sum when io.loss_sum is set);
  // with grad, the gradient to io.dx[0].
  virtual void run(LayerIO& io, bool grad) = 0;
  static LossOut value_out(LayerIO& io, bool grad) {
    LossOut out;
    if (!grad) {
      out.value = io.y;
      out.sum = io.loss_sum;
      out.accumulate = io.accumulate_loss;
    }
    return out;
  }
  static float* grad_out(LayerIO& io, bool grad) { return grad ? io.dx[0] : nullptr; }
  static bool grad_accumulate(LayerIO& io, bool grad) { return grad && io.dx[0] ? bool(io.accumulate_dx[0]) : false; }
};

}  // namespace opendl
