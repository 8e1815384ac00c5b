// Batch normalisation (create_dl_layer_batch_normalization; Ioffe & Szegedy 2015). Training normalises with
// the statistics of the current (micro-)batch and updates running statistics; inference uses the running
// ones. momentum m: running = m * running + (1 - m) * batch; 'auto': cumulative average over all updates so
// far (m = k / (k + 1) at update k), which suits short fine-tuning runs. The running variance is stored
// unbiased (batch variance * M / (M - 1), M = N * H * W). Blobs: 'weights' = scale (gamma), 'bias' = shift
// (beta), state 'moving_mean', 'moving_variance', 'update_count'.
// Gen param 'use_global_stats' (opendl extension, default 'false'): 'true' normalises with the running
// statistics in training too and leaves them unchanged, so the layer is a fixed per-channel affine map
// y = gamma (x - mean) / sqrt(var + eps) + beta (a frozen layer; create_dl_model_detection's
// freeze_backbone_level sets it together with learning-rate multipliers 0).
#include <cmath>
#include <vector>

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class BatchNorm : public Layer {
 public:
  void configure() override {
    act_ = str_param("activation") == "relu" ? Act::kRelu : Act::kNone;
    global_ = bool_param("use_global_stats");
    const Value& m = param("momentum")[0];
    auto_ = is_string(m);
    momentum_ = auto_ ? 0.0 : as_double(m);
    if (!auto_ && (momentum_ < 0.0 || momentum_ >= 1.0))
      fail(err::kWrongValue3, "layer '" + name() + "': momentum must lie in [0, 1) or be 'auto', got " + to_string(m));
  }
  Shape4 infer(const std::vector<Shape4>& in) const override { return in[0]; }
  // The fixed affine map of use_global_stats differentiates on the host in the plain layout.
  Layouts layouts() const override { return global_ ? Layouts::kPlainOnly : Layouts::kSame; }
  bool capturable(const std::vector<Shape4>&) const override { return !global_; }
  std::vector<BlobSpec> blob_specs(const std::vector<Shape4>& in) const override {
    int64_t c = in[0].c;
    BlobSpec g{"weights", {c}, BlobRole::kWeights, Filler::kOne};
    g.lr_mult = real_param("learning_rate_multiplier");
    BlobSpec b{"bias", {c}, BlobRole::kBias, Filler::kZero};
    b.lr_mult = real_param("learning_rate_multiplier_bias");
    BlobSpec mean{"moving_mean", {c}, BlobRole::kState, Filler::kZero};
    BlobSpec var{"moving_variance", {c}, BlobRole::kState, Filler::kOne};
    BlobSpec cnt{"update_count", {1}, BlobRole::kState, Filler::kZero};
    return {g, b, mean, var, cnt};
  }
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>& in, const Shape4& out) const override {
    // batch mean, batch variance; with use_global_stats and the fused relu, the masked output gradient
    return {in[0].c, in[0].c, global_ && act_ != Act::kNone ? out.numel() : 0};
  }
  // The ReLU is fused into the backend's batch normalisation (forward, and backward through the mask y > 0).
  void forward(LayerIO& io) override {
    const Shape4& x = io.xs[0];
    BnKey k{x.n, x.c, x.h, x.w, io.yb};
    float eps = float(real_param("epsilon"));
    if (io.training && !global_) {
      io.be->bn_forward(k, eps, true, act_, io.x[0], io.w[0], io.w[1], io.scratch[0], io.scratch[1], io.y);
      update_running(io, x);
    } else {
      io.be->bn_forward(k, eps, false, act_, io.x[0], io.w[0], io.w[1], io.w[2], io.w[3], io.y);
    }
  }
  bool can_fuse_relu() const override { return true; }
  // Inference with a following ReLU layer merged in (the running statistics; a ReLU of its own stays one).
  void forward_fused(LayerIO& io, bool relu, int64_t /*sum*/) override {
    const Shape4& x = io.xs[0];
    BnKey k{x.n, x.c, x.h, x.w, io.yb};
    io.be->bn_forward(k, float(real_param("epsilon")), false, relu ? Act::kRelu : act_, io.x[0], io.w[0], io.w[1],
                      io.w[2], io.w[3], io.y);
  }
  void backward(LayerIO& io) override {
    const Shape4& x = io.xs[0];
    BnKey k{x.n, x.c, x.h, x.w, io.yb};
    if (global_) {
      const float* dy = io.dy;
      if (act_ != Act::kNone) {
        io.be->act_backward(act_, size_t(io.ys.numel()), io.y, io.dy, io.scratch[2], false);
        dy = io.scratch[2];
      }
      backward_global(io, x, dy);
      return;
    }
    io.be->bn_backward(k, float(real_param("epsilon")), act_, io.x[0], io.y, io.dy, io.w[0], io.scratch[0],
                       io.scratch[1], io.dx[0], io.dw[0], io.dw[1], io.dx[0] ? io.accumulate_dx[0] : false,
                       io.accumulate_dw);
  }

 private:
  // The fixed affine map's gradients (running statistics): dx = dy * gamma / sqrt(var + eps),
  // dgamma = sum dy * (x - mean) / sqrt(var + eps), dbeta = sum dy, over (N, H, W) per channel.
  void backward_global(LayerIO& io, const Shape4& x, const float* dy) {
    const size_t c = size_t(x.c), hw = size_t(x.h * x.w), n = size_t(x.n), total = n * c * hw;
    std::vector<float> g(c), mean(c), var(c), hx(total), hdy(total), hdx(total), dg(c, 0.f), db(c, 0.f);
    io.be->download(g.data(), io.w[0], c);
    io.be->download(mean.data(), io.w[2], c);
    io.be->download(var.data(), io.w[3], c);
    io.be->download(hdy.data(), dy, total);
    if (io.dw[0] || io.dw[1]) io.be->download(hx.data(), io.x[0], total);
    const double eps = real_param("epsilon");
    for (size_t ch = 0; ch < c; ++ch) {
      const double inv = 1.0 / std::sqrt(double(var[ch]) + eps);
      double sg = 0, sb = 0;
      for (size_t b = 0; b < n; ++b) {
        const size_t o = (b * c + ch) * hw;
        for (size_t q = 0; q < hw; ++q) {
          hdx[o + q] = float(double(hdy[o + q]) * double(g[ch]) * inv);
          sb += hdy[o + q];
          if (io.dw[0]) sg += double(hdy[o + q]) * (double(hx[o + q]) - mean[ch]) * inv;
        }
      }
      dg[ch] = float(sg);
      db[ch] = float(sb);
    }
    if (io.dx[0]) {
      if (io.accumulate_dx[0]) {
        std::vector<float> old(total);
        io.be->download(old.data(), io.dx[0], total);
        for (size_t i = 0; i < total; ++i) hdx[i] += old[i];
      }
      io.be->upload(io.dx[0], hdx.data(), total);
    }
    for (int k = 0; k < 2; ++k) {
      float* dst = io.dw[size_t(k)];
      if (!dst) continue;
      std::vector<float>& v = k == 0 ? dg : db;
      if (io.accumulate_dw) {
        std::vector<float> old(c);
        io.be->download(old.data(), dst, c);
        for (size_t i = 0; i < c; ++i) v[i] += old[i];
      }
      io.be->upload(dst, v.data(), c);
    }
  }

  void update_running(LayerIO& io, const Shape4& x) {
    const double M = double(x.n * x.h * x.w);
    io.be->bn_update_running(size_t(x.c), auto_ ? -1.0 : momentum_, M > 1 ? M / (M - 1) : 1.0, io.scratch[0],
                             io.scratch[1], io.w[2], io.w[3], io.w[4]);
  }
  Act act_ = Act::kNone;
  bool auto_ = false, global_ = false;
  double momentum_ = 0.9;
};

std::vector<ParamSpec> params() {
  ParamSpec mom;
  mom.name = "momentum";
  mom.kind = ParamSpec::Kind::kNumberOrString;
  mom.choices = {"auto"};
  mom.positional = true;
  using K = ParamSpec::Kind;
  return {mom, pos_real("epsilon", 1e-12, 1.0), pos_str("activation", {"none", "relu"}),
          gen("learning_rate_multiplier", K::kReal, {1.0}, {}, 0.0),
          gen("learning_rate_multiplier_bias", K::kReal, {1.0}, {}, 0.0),
          gen("use_global_stats", K::kString, {std::string("false")}, {"true", "false"})};
}

LayerRegistrar reg{{"batchnorm", 1, 1, params(), [] { return std::make_shared<BatchNorm>(); }}};

}  // namespace
}  // namespace opendl
