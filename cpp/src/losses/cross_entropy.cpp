// Cross-entropy loss (create_dl_layer_loss_cross_entropy; spec E.3). Input: class probabilities (N, C, H, W),
// usually a softmax layer's output. Target: class ids (N, 1, H, W). Weights: per sample (N, 1, 1, 1) or per
// pixel (N, 1, H, W). L = -(1 / (N H W)) sum w * log p_target: the mean over samples and pixels, each term
// weighted (so class weights enter through the weights input).
#include <cmath>

#include "losses/loss_layer.h"

namespace opendl {
namespace {

class CrossEntropy : public LossLayer {
 public:
  void check_shapes(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    const Shape4& t = in[1];
    if (!(t.n == x.n && t.c == 1 && t.h == x.h && t.w == x.w))
      fail(err::kInvalidShape, "layer '" + name() + "': the target input must have depth 1 and the spatial size of the "
                                   "input " + x.str() + ", got " + t.str());
    require_like(in, 2, "weights", true, true);
  }
  void check_inputs(const std::vector<const float*>& host, const std::vector<Shape4>& xs) const override {
    if (!host[1]) return;
    int64_t c = xs[0].c;
    for (int64_t i = 0; i < xs[1].numel(); ++i) {
      float v = host[1][i];
      if (!(v >= 0.f && v < float(c) && v == std::floor(v)))
        fail(err::kInputWrongValues, "layer '" + name() + "': target value " + std::to_string(v) + " of sample " +
                                         std::to_string(i / xs[1].per_sample()) +
                                         " is not a class index in [0, " + std::to_string(c - 1) + "]");
    }
  }
  void run(LayerIO& io, bool grad) override {
    const Shape4& x = io.xs[0];
    int64_t ws = io.xs[2].h * io.xs[2].w;
    io.be->cross_entropy(x.n, x.c, x.h * x.w, io.x[0], io.x[1], io.x[2], ws, grad_out(io, grad), io.loss_scale,
                         grad_accumulate(io, grad), value_out(io, grad));
  }
};

LayerRegistrar reg{{"loss_cross_entropy", 3, 3, {pos_real("loss_weight", 0.0)},
                    [] { return std::make_shared<CrossEntropy>(); }}};

}  // namespace
}  // namespace opendl
