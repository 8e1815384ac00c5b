// Huber / smooth-L1 loss (create_dl_layer_loss_huber): inputs (input, target, weights[, normalization]),
// target and weights of the input's shape. L = sum w * h(x - t) / norm with h as in backend/losses; norm is
// the sum of the normalization input's values (at least 1) when given, else the batch size.
#include <algorithm>
#include <vector>

#include "losses/loss_layer.h"

namespace opendl {
namespace {

double normaliser(LayerIO& io, size_t idx) {
  if (io.x.size() <= idx) return double(io.xs[0].n);
  size_t n = size_t(io.xs[idx].numel());
  std::vector<float> v(n);
  io.be->download(v.data(), io.x[idx], n);
  double s = 0;
  for (float f : v) s += f;
  return std::max(s, 1.0);
}

class Huber : public LossLayer {
 public:
  void check_shapes(const std::vector<Shape4>& in) const override {
    require_like(in, 1, "target", false, false);
    require_like(in, 2, "weights", false, false);
  }
  double run(LayerIO& io, bool grad) {
    return io.be->huber(size_t(io.xs[0].numel()), float(real_param("beta")), io.x[0], io.x[1], io.x[2],
                        normaliser(io, 3), grad ? io.dx[0] : nullptr, io.loss_scale,
                        grad && io.dx[0] ? io.accumulate_dx[0] : false);
  }
  void forward(LayerIO& io) override { store(io, run(io, false)); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) run(io, true);
  }
};

LayerRegistrar reg{{"loss_huber", 3, 4, {pos_real("loss_weight", 0.0), pos_real("beta", 0.0)},
                    [] { return std::make_shared<Huber>(); }}};

}  // namespace

double loss_normaliser(LayerIO& io, size_t idx) { return normaliser(io, idx); }

}  // namespace opendl
