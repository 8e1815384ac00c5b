// Softmax layer (create_dl_layer_softmax): normalises over the depth axis at every (batch, row, column).
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Softmax : public Layer {
 public:
  Shape4 infer(const std::vector<Shape4>& in) const override { return in[0]; }
  void forward(LayerIO& io) override { io.be->softmax_forward(io.ys.n, io.ys.c, io.ys.spatial(), io.x[0], io.y); }
  void backward(LayerIO& io) override {
    if (io.dx[0])
      io.be->softmax_backward(io.ys.n, io.ys.c, io.ys.spatial(), io.y, io.dy, io.dx[0], io.accumulate_dx[0]);
  }
};

LayerRegistrar reg{{"softmax", 1, 1, {}, [] { return std::make_shared<Softmax>(); }}};

}  // namespace
}  // namespace opendl
