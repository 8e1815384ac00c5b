// Input layer (create_dl_layer_input): shape [width, height, depth]; the batch size comes from the model.
// A model takes the sample-dict entry whose key equals the layer's name. 'allow_smaller_tuple' 'true': a tuple
// may hold fewer values than width x height x depth; the rest are zeros.
#include "graph/layer.h"

namespace opendl {
namespace {

class Input : public Layer {
 public:
  bool is_input() const override { return true; }
  Shape4 infer(const std::vector<Shape4>&) const override {
    return Shape4{1, int_param("shape", 2), int_param("shape", 1), int_param("shape", 0)};
  }
  void forward(LayerIO&) override {}
  void backward(LayerIO&) override {}
};

std::vector<ParamSpec> params() {
  auto s = pos_int("shape", 3, 3, 1);
  return {s, gen("allow_smaller_tuple", ParamSpec::Kind::kString, {std::string("false")}, {"true", "false"})};
}

LayerRegistrar reg{{"input", 0, 0, params(), [] { return std::make_shared<Input>(); }}};

}  // namespace
}  // namespace opendl
