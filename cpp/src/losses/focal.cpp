// Focal loss (create_dl_layer_loss_focal, type 'focal_binary'; Lin et al. 2017): sigmoid focal loss on the
// raw scores (logits) of the input (N, C, H, W). Target: binary (N, C, H, W) or class ids (N, 1, H, W), an
// id outside [0, C) meaning background. Weights (N, 1 or C, H, W). class_weights: alpha per class (1 value
// for all, or C values; empty: no alpha weighting). Normalised like the Huber loss.
#include <algorithm>
#include <cmath>
#include <vector>

#include "losses/loss_layer.h"

namespace opendl {

double loss_normaliser(LayerIO& io, size_t idx);

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
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>& in, const Shape4&) const override {
    return {in[1].c == 1 && in[0].c > 1 ? in[0].numel() : 0, in[0].c};  // one-hot targets, alpha per class
  }
  double run(LayerIO& io, bool grad) {
    const Shape4& x = io.xs[0];
    const float* t = io.x[1];
    if (io.xs[1].c == 1 && x.c > 1) {  // expand class ids into one-hot targets
      std::vector<float> ids(size_t(io.xs[1].numel())), onehot(size_t(x.numel()), 0.f);
      io.be->download(ids.data(), io.x[1], ids.size());
      for (int64_t b = 0; b < x.n; ++b)
        for (int64_t j = 0; j < x.h * x.w; ++j) {
          int64_t id = int64_t(std::floor(ids[size_t(b * x.h * x.w + j)]));
          if (id >= 0 && id < x.c) onehot[size_t(b * x.c * x.h * x.w + id * x.h * x.w + j)] = 1.f;
        }
      io.be->upload(io.scratch[0], onehot.data(), onehot.size());
      t = io.scratch[0];
    }
    const float* alpha = nullptr;
    if (!alpha_.empty()) {
      std::vector<float> a(size_t(x.c), alpha_[0]);
      if (alpha_.size() > 1) a = alpha_;
      io.be->upload(io.scratch[1], a.data(), a.size());
      alpha = io.scratch[1];
    }
    return io.be->focal_binary(x.n, x.c, x.h * x.w, float(real_param("gamma")), alpha, io.x[0], t, io.x[2],
                               io.xs[2].c, loss_normaliser(io, 3), grad ? io.dx[0] : nullptr, io.loss_scale,
                               grad && io.dx[0] ? io.accumulate_dx[0] : false);
  }
  void forward(LayerIO& io) override { store(io, run(io, false)); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) run(io, true);
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
