// Focal loss (create_dl_layer_loss_focal, type 'focal_binary'; Lin et al. 2017): sigmoid focal loss on the
// raw scores (logits) of the input (N, C, H, W). Target: binary (N, C, H, W) or class ids (N, 1, H, W), an
// id outside [0, C) meaning background. Weights (N, 1 or C, H, W). class_weights: alpha per class (1 value
// for all, or C values; empty: no alpha weighting). Normalised like the Huber loss.
#include <algorithm>
#include <cmath>
#include <vector>

#include "losses/loss_layer.h"

namespace opendl {

namespace {

class Focal : public LossLayer {
 public:
  void configure() override {
    const Tuple& cw = param("class_weights");
    for (auto& v : cw) alpha_.push_back(float(as_double(v)));
    for (float a : alpha_)
      if (a < 0.f || a > 1.f)
        fail(err::kWrongValue3, "layer '" + name() + "': class_weights (alpha) must lie in [0, 1]");
  }
  void check_shapes(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    const Shape4& t = in[1];
    bool ids = t.n == x.n && t.c == 1 && t.h == x.h && t.w == x.w;
    if (!(t == x) && !ids)
      fail(err::kInvalidShape, "layer '" + name() + "': the target must have the input's shape " + x.str() +
                                   " or depth 1 (class ids), got " + t.str());
    require_like(in, 2, "weights", true, false);
    if (alpha_.size() > 1 && int64_t(alpha_.size()) != x.c)
      fail(err::kWrongNumValues3, "layer '" + name() + "': class_weights needs 1 or " + std::to_string(x.c) +
                                      " values, got " + std::to_string(alpha_.size()));
  }
  // alpha per class, on the device once per allocation
  std::vector<std::vector<float>> constants(const std::vector<Shape4>& in, const Shape4&) const override {
    if (alpha_.empty()) return {};
    return {alpha_.size() > 1 ? alpha_ : std::vector<float>(size_t(in[0].c), alpha_[0])};
  }
  void run(LayerIO& io, bool grad) override {
    const Shape4& x = io.xs[0];
    const bool ids = io.xs[1].c == 1 && x.c > 1;  // class ids (N, 1, H, W) instead of binary targets
    io.be->focal_binary(x.n, x.c, x.h * x.w, float(real_param("gamma")), alpha_.empty() ? nullptr : io.constants[0],
                        io.x[0], io.x[1], ids, io.x[2], io.xs[2].c, loss_normaliser(io, 3), grad_out(io, grad),
                        io.loss_scale, grad_accumulate(io, grad), value_out(io, grad));
  }

 private:
  std::vector<float> alpha_;
};

std::vector<ParamSpec> params() {
  ParamSpec cw;
  cw.name = "class_weights";
  cw.kind = ParamSpec::Kind::kReal;
  cw.min_len = 0;
  cw.max_len = 1 << 20;
  cw.positional = true;
  return {pos_real("loss_weight", 0.0), pos_real("gamma", 0.0), cw, pos_str("type", {"focal_binary"})};
}

LayerRegistrar reg{{"loss_focal", 3, 4, params(), [] { return std::make_shared<Focal>(); }}};

}  // namespace
}  // namespace opendl
