// Huber / smooth-L1 loss (create_dl_layer_loss_huber): inputs (input, target, weights[, normalization]),
// target and weights of the input's shape. L = sum w * h(x - t) / norm with h as in backend/losses; norm is
// the sum of the normalization input's values (at least 1) when given, else the batch size.
#include <algorithm>
#include <vector>

#include "losses/loss_layer.h"

namespace opendl {
namespace {

class Huber : public LossLayer {
 public:
  void check_shapes(const std::vector<Shape4>& in) const override {
    require_like(in, 1, "target", false, false);
    require_like(in, 2, "weights", false, false);
  }
  void run(LayerIO& io, bool grad) override {
    io.be->huber(size_t(io.xs[0].numel()), float(real_param("beta")), io.x[0], io.x[1], io.x[2],
                 loss_normaliser(io, 3), grad_out(io, grad), io.loss_scale, grad_accumulate(io, grad),
                 value_out(io, grad));
  }
};

LayerRegistrar reg{{"loss_huber", 3, 4, {pos_real("loss_weight", 0.0), pos_real("beta", 0.0)},
                    [] { return std::make_shared<Huber>(); }}};

}  // namespace

LossNorm loss_normaliser(const LayerIO& io, size_t idx) {
  LossNorm norm;
  norm.fallback = double(io.xs[0].n);
  if (io.x.size() > idx) {
    norm.src = io.x[idx];
    norm.n = size_t(io.xs[idx].numel());
  }
  return norm;
}

}  // namespace opendl
