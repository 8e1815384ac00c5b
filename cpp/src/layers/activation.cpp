// Activation layer (create_dl_layer_activation): 'relu', 'sigmoid', 'tanh'. Backward uses the output,
// which all three allow, so the input need not be kept for it.
#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

class Activation : public Layer {
 public:
  void configure() override {
    auto t = str_param("activation_type");
    act_ = t == "relu" ? Act::kRelu : t == "sigmoid" ? Act::kSigmoid : Act::kTanh;
  }
  Shape4 infer(const std::vector<Shape4>& in) const override { return in[0]; }
  void forward(LayerIO& io) override { io.be->act_forward(act_, size_t(io.ys.numel()), io.x[0], io.y); }
  void backward(LayerIO& io) override {
    if (io.dx[0]) io.be->act_backward(act_, size_t(io.ys.numel()), io.y, io.dy, io.dx[0], io.accumulate_dx[0]);
  }

 private:
  Act act_ = Act::kRelu;
};

LayerRegistrar reg{{"activation", 1, 1, {pos_str("activation_type", {"relu", "sigmoid", "tanh"})},
                    [] { return std::make_shared<Activation>(); }}};

}  // namespace
}  // namespace opendl
