// Reshape layer (create_dl_layer_reshape): shape [width, height, depth] or [width, height, depth, batch];
// 0 keeps the input's size in that dimension, one entry may be -1 (inferred from the element count).
// Without a batch entry the batch size is kept and the per-sample element count must be preserved.
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Reshape : public Layer {
 public:
  Shape4 infer(const std::vector<Shape4>& in) const override {
    const Shape4& x = in[0];
    const Tuple& s = param("shape");
    int64_t cur[4] = {x.w, x.h, x.c, x.n};
    int64_t out[4] = {0, 0, 0, x.n};
    int infer_at = -1;
    int64_t known = 1;
    for (size_t i = 0; i < 4; ++i) {
      if (i >= s.size()) { known *= out[i]; continue; }
      int64_t v = std::get<int64_t>(s[i]);
      if (v == 0) v = cur[i];
      if (v == -1) {
        if (infer_at >= 0) fail(err::kWrongValue3, "layer '" + name() + "': shape may contain -1 only once");
        infer_at = int(i);
        continue;
      }
      if (v < 1) fail(err::kWrongValue3, "layer '" + name() + "': shape entries must be >= 1, 0 or -1");
      out[i] = v;
      known *= v;
    }
    if (infer_at >= 0) {
      if (x.numel() % known != 0)
        fail(err::kInvalidShape, "layer '" + name() + "': cannot infer the -1 entry of shape " + to_string(s) +
                                     " for input " + x.str());
      out[infer_at] = x.numel() / known;
      known *= out[infer_at];
    }
    if (known != x.numel())
      fail(err::kInvalidShape, "layer '" + name() + "': shape " + to_string(s) + " holds " + std::to_string(known) +
                                   " values but the input " + x.str() + " holds " + std::to_string(x.numel()));
    return Shape4{out[3], out[2], out[1], out[0]};
  }
  void forward(LayerIO& io) override { io.be->copy(io.y, io.x[0], size_t(io.ys.numel())); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) io.be->copy2d(io.dx[0], 0, 0, io.dy, 0, 0, 1, io.ys.numel(), 1.f, io.accumulate_dx[0]);
  }
};

LayerRegistrar reg{{"reshape", 1, 1, {pos_int("shape", 3, 4, -1)}, [] { return std::make_shared<Reshape>(); }}};

}  // namespace
}  // namespace opendl
