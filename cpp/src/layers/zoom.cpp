// Zoom layers: create_dl_layer_zoom_factor (output = floor(input * scale)), zoom_size (fixed width and
// height) and zoom_to_layer_size (the spatial size of a reference layer). Interpolation 'bilinear' or
// 'nearest_neighbor'; align_corners 'true' maps the corner pixel centres onto each other, 'false' uses the
// half-pixel convention (source = (dst + 0.5) * in / out - 0.5), as ONNX Resize does.
#include <cmath>

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Zoom : public Layer {
 public:
  explicit Zoom(int kind) : kind_(kind) {}
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    Shape4 y = x;
    if (kind_ == 0) {
      y.w = int64_t(std::floor(double(x.w) * real_param("scale_width")));
      y.h = int64_t(std::floor(double(x.h) * real_param("scale_height")));
    } else if (kind_ == 1) {
      y.w = int_param("width");
      y.h = int_param("height");
    } else {
      y.w = in[1].w;
      y.h = in[1].h;
    }
    if (y.w < 1 || y.h < 1)
      fail(err::kInvalidShape, "layer '" + name() + "': the zoomed size of input " + x.str() + " is empty");
    return y;
  }
  bool input_needs_grad(size_t i) const override { return i == 0; }
  ZoomKey key(const LayerIO& io) const {
    return ZoomKey{io.xs[0].n, io.xs[0].c, io.xs[0].h, io.xs[0].w, io.ys.h, io.ys.w,
                   str_param("interpolation") == "bilinear" ? 1 : 0, bool_param("align_corners") ? 1 : 0};
  }
  void forward(LayerIO& io) override { io.be->zoom_forward(key(io), io.x[0], io.y); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) io.be->zoom_backward(key(io), io.dy, io.dx[0], io.accumulate_dx[0]);
  }

 private:
  int kind_;
};

std::vector<ParamSpec> common() {
  return {pos_str("interpolation", {"bilinear", "nearest_neighbor"}), pos_str("align_corners", {"true", "false"})};
}
std::vector<ParamSpec> with(std::vector<ParamSpec> head) {
  for (auto& s : common()) head.push_back(s);
  return head;
}

LayerRegistrar reg_f{{"zoom_factor", 1, 1, with({pos_real("scale_width", 1e-6), pos_real("scale_height", 1e-6)}),
                      [] { return std::make_shared<Zoom>(0); }}};
LayerRegistrar reg_s{{"zoom_size", 1, 1, with({pos_int("width", 1, 1, 1, kMaxGeometry),
                                                            pos_int("height", 1, 1, 1, kMaxGeometry)}),
                      [] { return std::make_shared<Zoom>(1); }}};
LayerRegistrar reg_l{{"zoom_to_layer_size", 2, 2, common(), [] { return std::make_shared<Zoom>(2); }}};

}  // namespace
}  // namespace opendl
