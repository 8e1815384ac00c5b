// Dropout layer (create_dl_layer_dropout; Srivastava et al. 2014) in the inverted form: in training each
// value is kept with probability 1 - p and scaled by 1 / (1 - p); inference passes values unchanged. The
// mask is drawn from the training step's seed (in device memory, drawn by the model's seeded RNG for every
// micro-batch), mixed with the layer's slot: training is reproducible, and a recorded step draws new masks.
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Dropout : public Layer {
 public:
  // Elementwise over equally shaped tensors: any layout, the same for inputs and output.
  Layouts layouts() const override { return Layouts::kSame; }
  Shape4 infer(const std::vector<Shape4>& in) const override { return in[0]; }
  bool uses_step_seed() const override { return true; }
  std::vector<int64_t> scratch_sizes(const std::vector<Shape4>&, const Shape4& out) const override {
    return {out.numel()};
  }
  void forward(LayerIO& io) override {
    if (io.training)
      io.be->dropout_forward(io.ys, io.yb, float(real_param("probability")), io.step_seed, io.salt, io.x[0],
                             io.scratch[0], io.y);
    else
      io.be->copy(io.y, io.x[0], size_t(io.ys.numel()));
  }
  void backward(LayerIO& io) override {
    if (io.dx[0]) io.be->mul_acc(size_t(io.ys.numel()), io.dy, io.scratch[0], io.dx[0], io.accumulate_dx[0]);
  }
};

LayerRegistrar reg{{"dropout", 1, 1, {pos_real("probability", 0.0, 0.999999)},
                    [] { return std::make_shared<Dropout>(); }}};

}  // namespace
}  // namespace opendl
