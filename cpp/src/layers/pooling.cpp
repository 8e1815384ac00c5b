// Pooling layer (create_dl_layer_pooling): modes 'maximum' and 'average' over kernel_size / stride windows
// ([width, height]) with HALCON's padding modes; 'global_maximum' and 'global_average' pool each channel to
// an output of kernel_size (1 x 1 gives one value per channel) independent of the input size.
#include "backend/backend.h"
#include "layers/geometry.h"

namespace opendl {
namespace {

class Pooling : public Layer {
 public:
  void configure() override {
    mode_ = str_param("mode");
    wh_param(*this, "kernel_size", win_.kh, win_.kw);
    wh_param(*this, "stride", win_.sh, win_.sw);
  }
  bool global() const { return mode_.rfind("global_", 0) == 0; }
  // For global pooling the window is derived from the input so that the output has kernel_size cells:
  // adaptive bins of size ceil(in / out) placed with stride floor(in / out) (exact for divisible sizes).
  Window window(const Shape4& x) const {
    Window w = win_;
    if (global()) {
      int64_t oh = win_.kh, ow = win_.kw;
      if (x.h < oh || x.w < ow)
        fail(err::kInvalidShape, "layer '" + name() + "': global pooling to " + std::to_string(ow) + "x" +
                                     std::to_string(oh) + " needs an input at least that large, got " + x.str());
      w.sh = x.h / oh;
      w.sw = x.w / ow;
      w.kh = x.h - (oh - 1) * w.sh;
      w.kw = x.w - (ow - 1) * w.sw;
      return w;
    }
    resolve_padding(*this, w, x.h, x.w);
    return w;
  }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    Window w = window(x);
    return Shape4{x.n, x.c, window_out(*this, x.h, w.kh, w.sh, 1, w.pt, w.pb, "height"),
                  window_out(*this, x.w, w.kw, w.sw, 1, w.pl, w.pr, "width")};
  }
  PoolKey key(const LayerIO& io) const {
    Window w = window(io.xs[0]);
    bool mx = mode_ == "maximum" || mode_ == "global_maximum";
    return PoolKey{io.xs[0].n, io.xs[0].c, io.xs[0].h, io.xs[0].w, io.ys.h, io.ys.w, w.kh, w.kw, w.sh, w.sw,
                   w.pt, w.pb, w.pl, w.pr, mx ? 1 : 0, io.xb[0]};
  }
  // Global pooling (typically before a dense layer that reads plain activations) also converts its small output
  // between layouts; other pooling keeps its input's layout.
  Layouts layouts() const override { return global() ? Layouts::kAny : Layouts::kSame; }
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>& in, const Shape4& out) const override {
    Window w = window(in[0]);
    bool mx = mode_ == "maximum" || mode_ == "global_maximum";
    PoolKey k{in[0].n, in[0].c, in[0].h, in[0].w, out.h, out.w, w.kh, w.kw, w.sh, w.sw, w.pt, w.pb, w.pl, w.pr,
              mx ? 1 : 0};
    // max-pooling workspace; global pooling: the output in the input's layout when the two layouts differ
    return {mx ? int64_t(cpu_backend().pool_workspace_floats(k)) : 0, global() ? out.numel() : 0};
  }
  void forward(LayerIO& io) override {
    if (io.xb[0] == io.yb) {
      io.be->pool_forward(key(io), io.x[0], io.y, io.scratch[0], io.training);
      return;
    }
    io.be->pool_forward(key(io), io.x[0], io.scratch[1], io.scratch[0], io.training);
    if (io.yb) io.be->from_plain(io.scratch[1], io.y, io.ys, io.yb);
    else io.be->to_plain(io.scratch[1], io.y, io.ys, io.xb[0]);
  }
  void backward(LayerIO& io) override {
    if (!io.dx[0]) return;
    const float* dy = io.dy;
    if (io.xb[0] != io.yb) {  // the output gradient in the input's layout
      if (io.yb) io.be->to_plain(io.dy, io.scratch[1], io.ys, io.yb);
      else io.be->from_plain(io.dy, io.scratch[1], io.ys, io.xb[0]);
      dy = io.scratch[1];
    }
    io.be->pool_backward(key(io), dy, io.scratch[0], io.dx[0], io.accumulate_dx[0]);
  }

 private:
  Window win_{};
  std::string mode_;
};

std::vector<ParamSpec> params() {
  return {pos_int("kernel_size", 1, 2, 1, kMaxGeometry), pos_int("stride", 1, 2, 1, kMaxGeometry), padding_spec(),
          pos_str("mode", {"maximum", "average", "global_maximum", "global_average"})};
}

LayerRegistrar reg{{"pooling", 1, 1, params(), [] { return std::make_shared<Pooling>(); }}};

}  // namespace
}  // namespace opendl
