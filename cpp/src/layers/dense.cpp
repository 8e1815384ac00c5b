// Dense (fully connected) layer (create_dl_layer_dense): the input is flattened in (depth, height, width)
// order; weights (num_out, depth * height * width), bias (num_out); output shape (1, 1, num_out).
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Dense : public Layer {
 public:
  void configure() override { bias_ = bool_param("bias_term"); }
  Shape4 infer(const std::vector<Shape4>& in) const override { return Shape4{in[0].n, int_param("num_out"), 1, 1}; }
  std::vector<BlobSpec> blob_specs(const std::vector<Shape4>& in) const override {
    int64_t k = int_param("num_out"), ic = in[0].per_sample();
    BlobSpec w;
    w.name = "weights";
    w.shape = {k, ic};
    w.fan_in = double(ic);
    w.fan_out = double(k);
    apply_filler_params(*this, w, false);
    std::vector<BlobSpec> v{w};
    if (bias_) {
      BlobSpec b = w;
      b.name = "bias";
      b.shape = {k};
      b.role = BlobRole::kBias;
      apply_filler_params(*this, b, true);
      v.push_back(b);
    }
    return v;
  }
  DenseKey key(const LayerIO& io) const { return DenseKey{io.xs[0].n, io.xs[0].per_sample(), io.ys.c, bias_ ? 1 : 0}; }
  void forward(LayerIO& io) override {
    io.be->dense_forward(key(io), io.x[0], io.w[0], bias_ ? io.w[1] : nullptr, io.y);
  }
  void backward(LayerIO& io) override {
    io.be->dense_backward_weights(key(io), io.x[0], io.dy, io.dw[0], bias_ ? io.dw[1] : nullptr, io.accumulate_dw);
    if (io.dx[0]) io.be->dense_backward_data(key(io), io.dy, io.w[0], io.dx[0], io.accumulate_dx[0]);
  }

 private:
  bool bias_ = true;
};

std::vector<ParamSpec> params() {
  std::vector<ParamSpec> v = {pos_int("num_out", 1, 1, 1, kMaxCount)};
  for (auto& s : filler_param_specs(true)) v.push_back(s);
  return v;
}

LayerRegistrar reg{{"dense", 1, 1, params(), [] { return std::make_shared<Dense>(); }}};

}  // namespace
}  // namespace opendl
