// Base of the loss layers: a scalar output (shape 1 x 1 x 1, batch 1) holding the normalised loss, a
// loss_weight for total_loss, and no gradient towards target, weight or normalisation inputs.
#pragma once

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {

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
  void store(LayerIO& io, double v) {
    io.loss_value = v;
    float f = float(v);
    io.be->upload(io.y, &f, 1);
  }
};

}  // namespace opendl
