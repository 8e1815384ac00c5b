// Built-in classifiers under HALCON's file names, built with the same layer operators a user calls. HALCON's
// pretrained weights are not ours to ship: every network starts from seeded random weights (He initialisation
// for ReLU layers), which the model's meta_data states. All but AlexNet end in global average pooling, so
// they accept any image size (padding keeps every stage valid down to 1 x 1; 16 to 32 pixels are the
// sensible least); defaults are 224 x 224 x 3 as HALCON's.
//   compact      stem + 3 stride-2 stages of conv3x3-BN-ReLU pairs (32..256 channels), 0.58 M weights
//   enhanced     stem + 4 stride-2 stages of 2 conv3x3-BN-ReLU (128..512), dropout 0.5, 9.4 M weights
//   resnet18     He et al. 2016, basic blocks [2, 2, 2, 2]
//   resnet50     He et al. 2016, bottleneck blocks [3, 4, 6, 3]
//   mobilenet_v2 Sandler et al. 2018, inverted residuals, ReLU6, width 1.0
//   alexnet      Krizhevsky et al. 2012 without LRN, dense 4096-4096, min 67 x 67 (fixed dense input size:
//                changing the image size re-initialises the first dense layer)
#include <functional>
#include <map>

#include "models/model.h"
#include "models/zoo.h"

namespace opendl {
namespace {

using namespace zoo;

// Adds the class scores, softmax, the label and weight inputs and the cross-entropy loss, and makes the
// classification model.
std::shared_ptr<Model> finish(const L& features, const std::string& arch) {
  L logits = CreateDlLayerDense(features, "class_scores", 3, kNone, kNone);
  L prob = CreateDlLayerSoftmax(logits, "softmax", kNone, kNone);
  L label = CreateDlLayerInput("image_label_id", {int64_t(1), int64_t(1), int64_t(1)}, kNone, kNone);
  L weight = CreateDlLayerInput("class_weight", {int64_t(1), int64_t(1), int64_t(1)}, kNone, kNone);
  L loss = CreateDlLayerLossCrossEntropy(prob, label, weight, "cross_entropy", 1.0, kNone, kNone);
  auto m = std::make_shared<Model>(std::vector<LayerPtr>{loss.ptr});
  m->set_adapter(make_classification_adapter(*m));
  set_zoo_meta_data(*m, arch);
  return m;
}

std::shared_ptr<Model> compact() {
  Builder b;
  L img = image_input(), x = b.cbr(img, 3, 32, 2);
  for (int64_t c : {32, 64, 128}) x = b.cbr(b.cbr(x, 3, c), 3, 2 * c, 2);
  return finish(b.gap(x), "compact");
}

std::shared_ptr<Model> enhanced() {
  Builder b;
  L img = image_input(), x = b.cbr(img, 3, 64, 2);
  x = b.cbr(x, 3, 64);
  for (int64_t c : {128, 256, 512, 512}) x = b.cbr(b.cbr(x, 3, c, 2), 3, c);
  x = CreateDlLayerDropout(b.gap(x), "dropout", 0.5, kNone, kNone);
  return finish(x, "enhanced");
}

std::shared_ptr<Model> resnet(const std::vector<int>& blocks, bool bottleneck, const std::string& arch) {
  Builder b;
  L img = image_input();
  L x = b.maxpool(b.cbr(img, 7, 64, 2), 3, 2, "half_kernel_size");
  int64_t in_c = 64;
  for (size_t stage = 0; stage < blocks.size(); ++stage) {
    int64_t width = 64 << stage, out_c = bottleneck ? width * 4 : width;
    for (int i = 0; i < blocks[stage]; ++i) {
      int64_t stride = (i == 0 && stage > 0) ? 2 : 1;
      L y = bottleneck ? b.cbr(b.cbr(b.cbr(x, 1, width), 3, width, stride), 1, out_c, 1, 1, false)
                       : b.cbr(b.cbr(x, 3, width, stride), 3, out_c, 1, 1, false);
      L shortcut = (stride != 1 || in_c != out_c) ? b.cbr(x, 1, out_c, stride, 1, false) : x;
      x = b.relu(b.add(y, shortcut));
      in_c = out_c;
    }
  }
  return finish(b.gap(x), arch);
}

std::shared_ptr<Model> mobilenet_v2() {
  Builder b;
  L img = image_input();
  L x = b.relu6(b.cbr(img, 3, 32, 2, 1, false));
  int64_t in_c = 32;
  const int cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                         {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  for (auto& c : cfg)
    for (int i = 0; i < c[2]; ++i) {
      int64_t stride = i == 0 ? c[3] : 1, hidden = in_c * c[0];
      L y = x;
      if (c[0] != 1) y = b.relu6(b.cbr(y, 1, hidden, 1, 1, false));
      y = b.relu6(b.cbr(y, 3, hidden, stride, hidden, false));  // depthwise
      y = b.cbr(y, 1, c[1], 1, 1, false);                         // linear bottleneck
      x = (stride == 1 && in_c == c[1]) ? b.add(y, x) : y;
      in_c = c[1];
    }
  x = b.relu6(b.cbr(x, 1, 1280, 1, 1, false));
  return finish(b.gap(x), "mobilenet_v2");
}

std::shared_ptr<Model> alexnet() {
  Builder b;
  L img = image_input();
  auto conv = [&](const L& x, int64_t k, int64_t out, int64_t s, const std::string& pad) {
    return CreateDlLayerConvolution(x, b.name("conv"), {k}, {int64_t(1)}, {s}, out, 1, {pad}, "relu",
                                    {std::string("weight_filler")}, {std::string("msra")});
  };
  L x = b.maxpool(conv(img, 11, 96, 4, "none"), 3, 2, "none");
  x = b.maxpool(conv(x, 5, 256, 1, "half_kernel_size"), 3, 2, "none");
  x = conv(conv(conv(x, 3, 384, 1, "half_kernel_size"), 3, 384, 1, "half_kernel_size"), 3, 256, 1, "half_kernel_size");
  x = b.maxpool(x, 3, 2, "none");
  for (int i = 0; i < 2; ++i) {
    x = CreateDlLayerDense(x, b.name("fc"), 4096, {std::string("weight_filler")}, {std::string("msra")});
    x = CreateDlLayerDropout(b.relu(x), b.name("dropout"), 0.5, kNone, kNone);
  }
  return finish(x, "alexnet");
}

const std::map<std::string, std::function<std::shared_ptr<Model>()>>& registry() {
  static const std::map<std::string, std::function<std::shared_ptr<Model>()>> z = {
      {"pretrained_dl_classifier_compact.hdl", compact},
      {"pretrained_dl_classifier_enhanced.hdl", enhanced},
      {"pretrained_dl_classifier_resnet18.hdl", [] { return resnet({2, 2, 2, 2}, false, "resnet18"); }},
      {"pretrained_dl_classifier_resnet50.hdl", [] { return resnet({3, 4, 6, 3}, true, "resnet50"); }},
      {"pretrained_dl_classifier_mobilenet_v2.hdl", mobilenet_v2},
      {"pretrained_dl_classifier_alexnet.hdl", alexnet},
      {"pretrained_dl_segmentation_compact.hdl", segmentation_compact},
      {"pretrained_dl_segmentation_enhanced.hdl", segmentation_enhanced},
      {"pretrained_dl_edge_extractor.hdl", edge_extractor},
  };
  return z;
}

}  // namespace

void set_zoo_meta_data(Model& m, const std::string& arch) {
  auto meta = std::make_shared<Dict>();
  meta->set_tuple("architecture", {arch});
  meta->set_tuple("weights", {std::string("random: seeded He/Xavier initialisation, not HALCON's pretrained weights")});
  m.set_meta_data(meta);
}

std::shared_ptr<Model> make_builtin_model(const std::string& file_name) {
  std::string base = file_name.substr(file_name.find_last_of('/') == std::string::npos ? 0 : file_name.find_last_of('/') + 1);
  auto it = registry().find(base);
  if (it == registry().end()) return nullptr;
  return it->second();
}

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> v;
  for (auto& kv : registry()) v.push_back(kv.first);
  return v;
}

}  // namespace opendl
