// Distance loss (create_dl_layer_loss_distance): distance_type 'l2' (squared Euclidean) or 'l1' between
// input and target of equal shape, per-element weights (input's shape, or one value per sample broadcast
// by the model), summed and divided by the batch size.
#include "losses/loss_layer.h"

namespace opendl {
namespace {

class Distance : public LossLayer {
 public:
  void check_shapes(const std::vector<Shape4>& in) const override {
    require_like(in, 1, "target", false, false);
    require_like(in, 2, "weights", false, false);
  }
  void run(LayerIO& io, bool grad) override {
    LossNorm norm;
    norm.fallback = double(io.xs[0].n);
    io.be->distance(size_t(io.xs[0].numel()), str_param("distance_type") == "l1", io.x[0], io.x[1], io.x[2], norm,
                    grad_out(io, grad), io.loss_scale, grad_accumulate(io, grad), value_out(io, grad));
  }
};

LayerRegistrar reg{{"loss_distance", 3, 3, {pos_str("distance_type", {"l2", "l1"}), pos_real("loss_weight", 0.0)},
                    [] { return std::make_shared<Distance>(); }}};

}  // namespace
}  // namespace opendl
