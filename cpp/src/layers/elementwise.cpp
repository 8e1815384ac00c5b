// Elementwise layer (create_dl_layer_elementwise) over inputs of equal shape: 'sum' (weighted by
// coefficients, one per input, default 1), 'product', 'maximum', 'minimum'. For maximum / minimum the
// gradient flows to every input equal to the result (ties share it fully, a valid subgradient).
#include <vector>

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Elementwise : public Layer {
 public:
  void configure() override {
    op_ = str_param("operation");
    const Tuple& c = param("coefficients");
    if (!c.empty() && c.size() != inputs_.size())
      fail(err::kWrongNumValues3, "layer '" + name() + "': coefficients needs one value per input (" +
                                      std::to_string(inputs_.size()) + "), got " + std::to_string(c.size()));
    if (!c.empty() && op_ != "sum")
      fail(err::kWrongValue3, "layer '" + name() + "': coefficients apply to operation 'sum' only");
    coef_.assign(inputs_.size(), 1.f);
    for (size_t i = 0; i < c.size(); ++i) coef_[i] = float(as_double(c[i]));
  }
  // Elementwise over equally shaped tensors: any layout, the same for inputs and output.
  Layouts layouts() const override { return Layouts::kSame; }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    for (size_t i = 1; i < in.size(); ++i)
      if (in[i] != in[0])
        fail(err::kInvalidShape, "layer '" + name() + "': input " + std::to_string(i) + " has shape " + in[i].str() +
                                     " but input 0 has " + in[0].str());
    return in[0];
  }
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>&, const Shape4& out) const override {
    return {op_ == "product" && inputs_.size() > 2 ? out.numel() : 0};
  }
  void forward(LayerIO& io) override {
    size_t n = size_t(io.ys.numel());
    if (op_ == "sum") {
      io.be->copy2d(io.y, 0, 0, io.x[0], 0, 0, 1, int64_t(n), coef_[0], false);
      for (size_t i = 1; i < io.x.size(); ++i) io.be->axpy(n, coef_[i], io.x[i], io.y);
    } else if (op_ == "product") {
      io.be->copy(io.y, io.x[0], n);
      for (size_t i = 1; i < io.x.size(); ++i) io.be->mul(n, io.y, io.x[i], io.y);
    } else {
      io.be->copy(io.y, io.x[0], n);
      for (size_t i = 1; i < io.x.size(); ++i) io.be->minmax_forward(n, op_ == "maximum", io.y, io.x[i], io.y);
    }
  }
  void backward(LayerIO& io) override {
    size_t n = size_t(io.ys.numel());
    for (size_t i = 0; i < io.x.size(); ++i) {
      if (!io.dx[i]) continue;
      bool acc = io.accumulate_dx[i];
      if (op_ == "sum") {
        io.be->copy2d(io.dx[i], 0, 0, io.dy, 0, 0, 1, int64_t(n), coef_[i], acc);
      } else if (op_ == "product") {
        // d/dx_i = dy * prod_{j != i} x_j
        const float* other = nullptr;
        if (io.x.size() == 2) {
          other = io.x[1 - i];
        } else {
          float* t = io.scratch[0];
          io.be->fill(t, n, 1.f);
          for (size_t j = 0; j < io.x.size(); ++j)
            if (j != i) io.be->mul(n, t, io.x[j], t);
          other = t;
        }
        io.be->mul_acc(n, io.dy, other, io.dx[i], acc);
      } else {
        io.be->minmax_backward(n, op_ == "maximum", true, io.x[i], io.y, io.dy, io.dx[i], acc);
      }
    }
  }

 private:
  std::string op_;
  std::vector<float> coef_;
};

std::vector<ParamSpec> params() {
  ParamSpec c;
  c.name = "coefficients";
  c.kind = ParamSpec::Kind::kReal;
  c.min_len = 0;
  c.max_len = 1 << 20;
  c.positional = true;
  return {pos_str("operation", {"sum", "product", "maximum", "minimum"}), c};
}

LayerRegistrar reg{{"elementwise", 1, 1 << 20, params(), [] { return std::make_shared<Elementwise>(); }}};

}  // namespace
}  // namespace opendl
