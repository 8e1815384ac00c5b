// Depth max (create_dl_layer_depth_max): per (batch, row, column) the maximum over the depth axis
// ('value' output, differentiable: the gradient goes to the winning channel) or its index ('argmax'
// output, not differentiable). create_dl_layer_depth_max creates one layer per requested output; with
// depth_max_mode 'argmax_and_value' the value layer is named '<layer_name>_value'.
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class DepthMax : public Layer {
 public:
  bool value() const { return str_param("output") == "value"; }
  Shape4 infer(const std::vector<Shape4>& in) const override { return Shape4{in[0].n, 1, in[0].h, in[0].w}; }
  bool input_needs_grad(size_t) const override { return value(); }
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>&, const Shape4& out) const override {
    return {value() ? out.numel() : 0};  // argmax, kept for backward
  }
  void forward(LayerIO& io) override {
    const Shape4& x = io.xs[0];
    if (value())
      io.be->depth_max_forward(x.n, x.c, x.h * x.w, io.x[0], io.scratch[0], io.y);
    else
      io.be->depth_max_forward(x.n, x.c, x.h * x.w, io.x[0], io.y, nullptr);
  }
  void backward(LayerIO& io) override {
    const Shape4& x = io.xs[0];
    if (value() && io.dx[0])
      io.be->depth_max_backward(x.n, x.c, x.h * x.w, io.scratch[0], io.dy, io.dx[0], io.accumulate_dx[0]);
  }
};

std::vector<ParamSpec> params() {
  using K = ParamSpec::Kind;
  return {gen("output", K::kString, {std::string("argmax")}, {"argmax", "value"})};
}

LayerRegistrar reg{{"depth_max", 1, 1, params(), [] { return std::make_shared<DepthMax>(); }}};

}  // namespace
}  // namespace opendl
