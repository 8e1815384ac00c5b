// The built-in models under HALCON's file names (zoo_*.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "opendl/operators.h"

namespace opendl {
class Model;
// The model a bare HALCON file name such as 'pretrained_dl_classifier_compact.hdl' stands for, or nullptr.
std::shared_ptr<Model> make_builtin_model(const std::string& file_name);
std::vector<std::string> builtin_model_names();
// States in the model's meta_data its architecture and that its weights are seeded random ones.
void set_zoo_meta_data(Model& m, const std::string& arch);

// Built-in segmentation models (zoo_segmentation.cpp).
std::shared_ptr<Model> segmentation_compact();
std::shared_ptr<Model> segmentation_enhanced();
std::shared_ptr<Model> edge_extractor();

// Helpers the zoo files build their networks with (the public layer operators).
namespace zoo {
using L = HDlLayer;
inline const Tuple kNone{};

struct Builder {
  int n = 0;
  std::string name(const std::string& base) { return base + "_" + std::to_string(++n); }
  L conv(const L& x, int64_t k, int64_t out, int64_t stride = 1, int64_t groups = 1, bool bias = false) {
    return CreateDlLayerConvolution(x, name("conv"), {k}, {int64_t(1)}, {stride}, out, groups,
                                    {std::string("half_kernel_size")}, "none",
                                    {std::string("weight_filler"), std::string("bias_term")},
                                    {std::string("msra"), std::string(bias ? "true" : "false")});
  }
  L bn(const L& x, bool relu) {
    return CreateDlLayerBatchNormalization(x, name("bn"), Value(0.9), 1e-5, relu ? "relu" : "none", kNone, kNone);
  }
  L cbr(const L& x, int64_t k, int64_t out, int64_t stride = 1, int64_t groups = 1, bool relu = true) {
    return bn(conv(x, k, out, stride, groups), relu);
  }
  L relu(const L& x) { return CreateDlLayerActivation(x, name("relu"), "relu", kNone, kNone); }
  L relu6(const L& x) {
    return CreateDlLayerActivation(x, name("relu6"), "relu", {std::string("upper_bound")}, {6.0});
  }
  L add(const L& a, const L& b) { return CreateDlLayerElementwise({a, b}, name("add"), "sum", kNone, kNone, kNone); }
  L gap(const L& x) {
    return CreateDlLayerPooling(x, "global_pool", {int64_t(1)}, {int64_t(1)}, {std::string("none")}, "global_average",
                                kNone, kNone);
  }
  L maxpool(const L& x, int64_t k, int64_t s, const std::string& pad) {
    return CreateDlLayerPooling(x, name("pool"), {k}, {s}, {pad}, "maximum", kNone, kNone);
  }
};

inline L image_input() {
  return CreateDlLayerInput("image", {int64_t(224), int64_t(224), int64_t(3)}, kNone, kNone);
}
}  // namespace zoo
}  // namespace opendl
