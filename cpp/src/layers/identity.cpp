// Identity layer (create_dl_layer_identity): passes its input through; useful as a named tap point.
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Identity : public Layer {
 public:
  // Elementwise over equally shaped tensors: any layout, the same for inputs and output.
  Layouts layouts() const override { return Layouts::kSame; }
  Shape4 infer(const std::vector<Shape4>& in) const override { return in[0]; }
  void forward(LayerIO& io) override { io.be->copy(io.y, io.x[0], size_t(io.ys.numel())); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) io.be->copy2d(io.dx[0], 0, 0, io.dy, 0, 0, 1, io.ys.numel(), 1.f, io.accumulate_dx[0]);
  }
};

LayerRegistrar reg{{"identity", 1, 1, {}, [] { return std::make_shared<Identity>(); }}};

}  // namespace
}  // namespace opendl
