// Convolution layer (create_dl_layer_convolution): kernel_size / dilation / stride as one value or
// [width, height], num_kernel, groups (depthwise when groups == input depth == num_kernel), padding,
// fused activation. Weights (num_kernel, depth_in / groups, kernel_h, kernel_w), bias (num_kernel).
#include "backend/backend.h"
#include "layers/geometry.h"

namespace opendl {
namespace {

Act parse_act(const std::string& a) {
  return a == "relu" ? Act::kRelu : a == "sigmoid" ? Act::kSigmoid : a == "tanh" ? Act::kTanh : Act::kNone;
}

// Weights (k, depth_in / groups, kernel_h, kernel_w) and an optional bias (k), shared by both layer types.
std::vector<BlobSpec> kernel_blobs(const Layer& l, int64_t k, int64_t depth_in, const Window& win, bool bias) {
  int64_t g = l.int_param("groups");
  BlobSpec w;
  w.name = "weights";
  w.shape = {k, depth_in / g, win.kh, win.kw};
  w.fan_in = double(depth_in / g * win.kh * win.kw);
  w.fan_out = double(k / g * win.kh * win.kw);
  apply_filler_params(l, w, false);
  std::vector<BlobSpec> v{w};
  if (bias) {
    BlobSpec b = w;
    b.name = "bias";
    b.shape = {k};
    b.role = BlobRole::kBias;
    apply_filler_params(l, b, true);
    v.push_back(b);
  }
  return v;
}

class Convolution : public Layer {
 public:
  void configure() override {
    wh_param(*this, "kernel_size", win_.kh, win_.kw);
    wh_param(*this, "dilation", win_.dh, win_.dw);
    wh_param(*this, "stride", win_.sh, win_.sw);
    act_ = parse_act(str_param("activation"));
    bias_ = bool_param("bias_term");
  }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    int64_t g = int_param("groups"), k = int_param("num_kernel");
    if (x.c % g != 0 || k % g != 0)
      fail(err::kWrongValue3, "layer '" + name() + "': groups (" + std::to_string(g) +
                                  ") must divide the input depth (" + std::to_string(x.c) + ") and num_kernel (" +
                                  std::to_string(k) + ")");
    Window w = win_;
    resolve_padding(*this, w, x.h, x.w);
    Shape4 y{x.n, k, window_out(*this, x.h, w.kh, w.sh, w.dh, w.pt, w.pb, "height"),
             window_out(*this, x.w, w.kw, w.sw, w.dw, w.pl, w.pr, "width")};
    return y;
  }
  std::vector<BlobSpec> blob_specs(const std::vector<Shape4>& in) const override {
    return kernel_blobs(*this, int_param("num_kernel"), in[0].c, win_, bias_);
  }
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>&, const Shape4& out) const override {
    return {act_ != Act::kNone ? out.numel() : 0};  // gradient before the fused activation
  }
  ConvKey key(const LayerIO& io) const {
    Window w = win_;
    resolve_padding(*this, w, io.xs[0].h, io.xs[0].w);
    return ConvKey{io.xs[0].n, io.xs[0].c, io.xs[0].h, io.xs[0].w, io.ys.c, io.ys.h, io.ys.w, w.kh, w.kw, w.sh,
                   w.sw, w.dh, w.dw, w.pt, w.pb, w.pl, w.pr, int_param("groups"), bias_ ? 1 : 0, 0,
                   io.xb[0], io.yb};
  }
  Layouts layouts() const override { return Layouts::kAny; }
  void forward(LayerIO& io) override {
    ConvKey k = key(io);
    k.inference = io.prepared ? 1 : 0;
    io.be->conv_forward(k, act_, io.x[0], io.w[0], bias_ ? io.w[1] : nullptr, io.y, io.prepared);
  }
  bool can_fuse() const override { return act_ == Act::kNone; }
  void forward_fused(LayerIO& io, bool relu, int64_t sum) override {
    ConvKey k = key(io);
    k.bias = io.w.size() > 1 ? 1 : 0;
    k.inference = 1;
    k.sum = sum;
    io.be->conv_forward(k, relu ? Act::kRelu : Act::kNone, io.x[0], io.w[0], k.bias ? io.w[1] : nullptr, io.y,
                        io.prepared);
  }
  void backward(LayerIO& io) override {
    ConvKey k = key(io);
    const float* dy = io.dy;
    if (act_ != Act::kNone) {
      io.be->act_backward(act_, size_t(io.ys.numel()), io.y, io.dy, io.scratch[0], false);
      dy = io.scratch[0];
    }
    io.be->conv_backward(k, io.x[0], dy, io.w[0], io.dx[0], io.dw[0], bias_ ? io.dw[1] : nullptr,
                         io.dx[0] ? io.accumulate_dx[0] : false, io.accumulate_dw);
  }

 private:
  Window win_{};
  Act act_ = Act::kNone;
  bool bias_ = true;
};

class TransposedConvolution : public Layer {
 public:
  // Any layout for the input and the output, as the convolution (ConvKey xb / yb).
  Layouts layouts() const override { return Layouts::kAny; }
  void configure() override {
    win_.kh = win_.kw = int_param("kernel_size");
    win_.sh = win_.sw = int_param("stride");
    bias_ = bool_param("bias_term");
  }
  // Output size (in - 1) * stride - pad_begin - pad_end + kernel: the shape inverse of a convolution with
  // the same kernel, stride and padding.
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    int64_t g = int_param("groups"), k = int_param("kernel_depth");
    if (x.c % g != 0 || k % g != 0)
      fail(err::kWrongValue3, "layer '" + name() + "': groups must divide the input depth and kernel_depth");
    Window w = pads(x);
    int64_t oh = (x.h - 1) * w.sh - w.pt - w.pb + w.kh, ow = (x.w - 1) * w.sw - w.pl - w.pr + w.kw;
    if (oh < 1 || ow < 1) fail(err::kInvalidShape, "layer '" + name() + "': padding leaves no output");
    return Shape4{x.n, k, oh, ow};
  }
  Window pads(const Shape4& x) const {
    Window w = win_;
    if (is_string(param("padding")[0]) && str_param("padding") == "implicit")
      fail(err::kWrongValue3, "layer '" + name() + "': padding 'implicit' is not defined for a transposed convolution");
    resolve_padding(*this, w, x.h, x.w);
    return w;
  }
  std::vector<BlobSpec> blob_specs(const std::vector<Shape4>& in) const override {
    return kernel_blobs(*this, int_param("kernel_depth"), in[0].c, win_, bias_);
  }
  ConvKey key(const LayerIO& io) const {
    Window w = pads(io.xs[0]);
    return ConvKey{io.xs[0].n, io.xs[0].c, io.xs[0].h, io.xs[0].w, io.ys.c, io.ys.h, io.ys.w, w.kh, w.kw, w.sh,
                   w.sw, 1, 1, w.pt, w.pb, w.pl, w.pr, int_param("groups"), bias_ ? 1 : 0, 1, io.xb[0], io.yb};
  }
  void forward(LayerIO& io) override {
    io.be->conv_forward(key(io), Act::kNone, io.x[0], io.w[0], bias_ ? io.w[1] : nullptr, io.y, io.prepared);
  }
  void backward(LayerIO& io) override {
    ConvKey k = key(io);
    io.be->conv_backward(k, io.x[0], io.dy, io.w[0], io.dx[0], io.dw[0], bias_ ? io.dw[1] : nullptr,
                         io.dx[0] ? io.accumulate_dx[0] : false, io.accumulate_dw);
  }

 private:
  Window win_{};
  bool bias_ = true;
};

std::vector<ParamSpec> conv_params() {
  std::vector<ParamSpec> v = {pos_int("kernel_size", 1, 2, 1, kMaxGeometry), pos_int("dilation", 1, 2, 1, kMaxGeometry),
                              pos_int("stride", 1, 2, 1, kMaxGeometry), pos_int("num_kernel", 1, 1, 1, kMaxCount),
                              pos_int("groups", 1, 1, 1, kMaxCount), padding_spec(),
                              pos_str("activation", {"none", "relu", "sigmoid", "tanh"})};
  for (auto& s : filler_param_specs(true)) v.push_back(s);
  return v;
}

std::vector<ParamSpec> tconv_params() {
  std::vector<ParamSpec> v = {pos_int("kernel_size", 1, 1, 1, kMaxGeometry), pos_int("stride", 1, 1, 1, kMaxGeometry),
                              pos_int("kernel_depth", 1, 1, 1, kMaxCount), pos_int("groups", 1, 1, 1, kMaxCount),
                              padding_spec()};
  for (auto& s : filler_param_specs(true)) v.push_back(s);
  return v;
}

LayerRegistrar reg_conv{{"convolution", 1, 1, conv_params(), [] { return std::make_shared<Convolution>(); }}};
LayerRegistrar reg_tconv{{"transposed_convolution", 1, 1, tconv_params(),
                          [] { return std::make_shared<TransposedConvolution>(); }}};

}  // namespace
}  // namespace opendl
