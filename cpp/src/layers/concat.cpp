// Concatenation layer (create_dl_layer_concat) along 'batch', 'depth', 'height' or 'width'. In the
// (N, C, H, W) layout every input is a (outer, inner_i) block of the output, copied with one strided copy.
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

int axis_index(const std::string& a) {
  return a == "batch" ? 0 : a == "depth" ? 1 : a == "height" ? 2 : 3;
}
int64_t dim(const Shape4& s, int a) { return a == 0 ? s.n : a == 1 ? s.c : a == 2 ? s.h : s.w; }

class Concat : public Layer {
 public:
  void configure() override { axis_ = axis_index(str_param("axis")); }
  Shape4 infer(const std::vector<Shape4>& in) const override {
    Shape4 y = in[0];
    int64_t total = 0;
    for (size_t i = 0; i < in.size(); ++i) {
      for (int a = 0; a < 4; ++a)
        if (a != axis_ && dim(in[i], a) != dim(in[0], a))
          fail(err::kInvalidShape, "layer '" + name() + "': input " + std::to_string(i) + " has shape " + in[i].str() +
                                       ", which differs from " + in[0].str() + " outside the concatenation axis");
      total += dim(in[i], axis_);
    }
    if (axis_ == 0) y.n = total; else if (axis_ == 1) y.c = total; else if (axis_ == 2) y.h = total; else y.w = total;
    return y;
  }
  // (outer, inner) view of shape s around the axis.
  void split(const Shape4& s, int64_t& outer, int64_t& inner) const {
    int64_t d[4] = {s.n, s.c, s.h, s.w};
    outer = 1;
    inner = 1;
    for (int a = 0; a < axis_; ++a) outer *= d[a];
    for (int a = axis_; a < 4; ++a) inner *= d[a];
  }
  void forward(LayerIO& io) override {
    int64_t outer, inner_y, off = 0;
    split(io.ys, outer, inner_y);
    for (size_t i = 0; i < io.x.size(); ++i) {
      int64_t o, inner;
      split(io.xs[i], o, inner);
      io.be->copy2d(io.y, inner_y, off, io.x[i], inner, 0, outer, inner, 1.f, false);
      off += inner;
    }
  }
  void backward(LayerIO& io) override {
    int64_t outer, inner_y, off = 0;
    split(io.ys, outer, inner_y);
    for (size_t i = 0; i < io.x.size(); ++i) {
      int64_t o, inner;
      split(io.xs[i], o, inner);
      if (io.dx[i]) io.be->copy2d(io.dx[i], inner, 0, io.dy, inner_y, off, outer, inner, 1.f, io.accumulate_dx[i]);
      off += inner;
    }
  }

 private:
  int axis_ = 1;
};

LayerRegistrar reg{{"concat", 1, 1 << 20, {pos_str("axis", {"batch", "depth", "height", "width"})},
                    [] { return std::make_shared<Concat>(); }}};

}  // namespace
}  // namespace opendl
