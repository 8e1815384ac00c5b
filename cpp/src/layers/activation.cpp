// Activation layer (create_dl_layer_activation): HALCON's pointwise activation types. 'relu' takes the generic
// parameters 'upper_bound' (e.g. 6 for ReLU6) and 'leaky_relu' (slope below 0); 'elu'/'celu' 'alpha';
// 'selu' 'alpha' and 'gamma'; 'clip' 'min' and 'max'; 'hard_sigmoid' 'alpha' and 'beta'; 'gelu' 'approximate'
// ('none' or 'tanh'). Plain relu, sigmoid and tanh use the backend's fused path whose backward needs only the
// output; the other types differentiate at the input.
#include <cfloat>
#include <map>

#include "backend/backend.h"
#include "graph/layer.h"

namespace opendl {
namespace {

const std::map<std::string, Pointwise>& types() {
  static const std::map<std::string, Pointwise> t = {
      {"abs", Pointwise::kAbs}, {"acos", Pointwise::kAcos}, {"asin", Pointwise::kAsin}, {"atan", Pointwise::kAtan},
      {"ceil", Pointwise::kCeil}, {"celu", Pointwise::kCelu}, {"clip", Pointwise::kClip}, {"cos", Pointwise::kCos},
      {"cosh", Pointwise::kCosh}, {"elu", Pointwise::kElu}, {"erf", Pointwise::kErf}, {"exp", Pointwise::kExp},
      {"floor", Pointwise::kFloor}, {"gelu", Pointwise::kGelu}, {"hard_sigmoid", Pointwise::kHardSigmoid},
      {"hard_swish", Pointwise::kHardSwish}, {"log", Pointwise::kLog}, {"mish", Pointwise::kMish},
      {"neg", Pointwise::kNeg}, {"reciprocal", Pointwise::kReciprocal}, {"relu", Pointwise::kRelu},
      {"round", Pointwise::kRound}, {"selu", Pointwise::kSelu}, {"sigmoid", Pointwise::kSigmoid},
      {"sign", Pointwise::kSign}, {"sin", Pointwise::kSin}, {"sinh", Pointwise::kSinh},
      {"softplus", Pointwise::kSoftplus}, {"softsign", Pointwise::kSoftsign}, {"sqrt", Pointwise::kSqrt},
      {"swish", Pointwise::kSwish}, {"tan", Pointwise::kTan}, {"tanh", Pointwise::kTanh}};
  return t;
}

class Activation : public Layer {
 public:
  void configure() override {
    const std::string t = str_param("activation_type");
    p_.op = types().at(t);
    fused_ = Act::kNone;
    if (t == "relu") {
      p_.a = float(real_param("leaky_relu"));
      const Value& ub = param("upper_bound").at(0);
      p_.b = is_string(ub) ? FLT_MAX : float(as_double(ub));
      if (is_string(ub) && std::get<std::string>(ub) != "none")
        fail(err::kUnsupportedGenValue, "'upper_bound' must be a number or 'none'");
      if (p_.b <= 0.f) fail(err::kUnsupportedGenValue, "'upper_bound' must be > 0");
      if (p_.a == 0.f && p_.b == FLT_MAX) fused_ = Act::kRelu;
    } else if (t == "sigmoid") {
      fused_ = Act::kSigmoid;
    } else if (t == "tanh") {
      fused_ = Act::kTanh;
    } else if (t == "elu" || t == "celu") {
      p_.a = alpha(1.0);
      if (t == "celu" && p_.a == 0.f) fail(err::kUnsupportedGenValue, "'alpha' of a celu activation must not be 0");
    } else if (t == "selu") {
      p_.a = alpha(1.6732632423543772);  // Klambauer et al. 2017
      p_.c = float(real_param("gamma"));
    } else if (t == "clip") {
      p_.a = float(real_param("min"));
      p_.b = float(real_param("max"));
      if (p_.a > p_.b) fail(err::kUnsupportedGenValue, "'min' of a clip activation must not exceed 'max'");
    } else if (t == "hard_sigmoid") {
      p_.a = alpha(0.2);
      p_.b = float(real_param("beta"));
    } else if (t == "gelu") {
      if (str_param("approximate") == "tanh") p_.op = Pointwise::kGeluTanh;
    }
  }
  // Elementwise over equally shaped tensors: any layout, the same for inputs and output.
  Layouts layouts() const override { return Layouts::kSame; }
  Act fusable_activation() const override { return fused_ == Act::kRelu ? Act::kRelu : Act::kNone; }
  Shape4 infer(const std::vector<Shape4>& in) const override { return in[0]; }
  void forward(LayerIO& io) override {
    if (fused_ != Act::kNone) io.be->act_forward(fused_, size_t(io.ys.numel()), io.x[0], io.y);
    else io.be->pointwise_forward(p_, size_t(io.ys.numel()), io.x[0], io.y);
  }
  void backward(LayerIO& io) override {
    if (!io.dx[0]) return;
    if (fused_ != Act::kNone)
      io.be->act_backward(fused_, size_t(io.ys.numel()), io.y, io.dy, io.dx[0], io.accumulate_dx[0]);
    else
      io.be->pointwise_backward(p_, size_t(io.ys.numel()), io.x[0], io.y, io.dy, io.dx[0], io.accumulate_dx[0]);
  }

 private:
  float alpha(double dflt) const {
    const Value& v = param("alpha").at(0);
    return float(is_string(v) ? dflt : as_double(v));
  }
  PointwiseOp p_;
  Act fused_ = Act::kNone;
};

std::vector<ParamSpec> params() {
  using K = ParamSpec::Kind;
  std::vector<std::string> names;
  for (auto& kv : types()) names.push_back(kv.first);
  // 'alpha' 'default' stands for the type's own value: 1 (elu, celu), 0.2 (hard_sigmoid), 1.6733 (selu).
  return {pos_str("activation_type", names),
          gen("upper_bound", K::kNumberOrString, {std::string("none")}),
          gen("leaky_relu", K::kReal, {0.0}),
          gen("alpha", K::kNumberOrString, {std::string("default")}, {"default"}),
          gen("beta", K::kReal, {0.5}),
          gen("gamma", K::kReal, {1.0507009873554805}),
          gen("min", K::kReal, {-double(FLT_MAX)}),
          gen("max", K::kReal, {double(FLT_MAX)}),
          gen("approximate", K::kString, {std::string("none")}, {"none", "tanh"})};
}

LayerRegistrar reg{{"activation", 1, 1, params(), [] { return std::make_shared<Activation>(); }}};

}  // namespace
}  // namespace opendl
