// Built-in segmentation models under HALCON's file names, built with the public layer operators and, like
// the classifiers, starting from seeded random weights (HALCON's pretrained weights are not ours to ship).
// Both are U-Net-style encoder-decoders (Ronneberger et al. 2015): an encoder of conv3x3-BN-ReLU stages, each
// halving the resolution with a stride-2 convolution, and a decoder that brings each stage back to the size of
// the encoder stage before it and concatenates that stage (skip connection) before two or one conv3x3-BN-ReLU.
// A 1x1 convolution ('class_scores') gives one score per class and pixel, a softmax the probabilities.
//   compact   full-resolution stem (16 channels) and 3 stride-2 stages (32, 64, 128 channels, output stride 8);
//             upsampling by bilinear zoom; 0.44 M weights.
//   enhanced  full-resolution stem (32) and 4 stride-2 stages (64 .. 512, output stride 16), two convolutions
//             per stage; upsampling by learned 2x2 stride-2 transposed convolutions; 7.8 M weights.
//   edge      the compact network with the classes 'background' (0) and 'edge' (1) and class weights 1 and
//   extractor 8, so that the rare thin edge pixels weigh as much in the loss as the background around them.
// Image sizes need not be multiples of the output stride: a stride-2 convolution gives ceil(size / 2), and
// every upsampled map is zoomed (zoom_to_layer_size) to the exact size of its skip connection, so the output
// always has the image's size. Defaults: 224 x 224 x 3 images, classes 0 and 1.
#include "models/class_adapter.h"
#include "models/zoo.h"

namespace opendl {
namespace {

using namespace zoo;

struct SegBuilder : Builder {
  L zoom_to(const L& x, const L& ref) {
    return CreateDlLayer("zoom_to_layer_size", {x, ref}, name("zoom"),
                         {{std::string("bilinear")}, {std::string("false")}}, kNone, kNone);
  }
  L up(const L& x, int64_t channels) {  // learned 2x upsampling
    return CreateDlLayer("transposed_convolution", {x}, name("upconv"),
                         {{int64_t(2)}, {int64_t(2)}, {channels}, {int64_t(1)}, {std::string("none")}},
                         {std::string("weight_filler")}, {std::string("msra")});
  }
  L concat(const L& a, const L& b) { return CreateDlLayerConcat({a, b}, name("concat"), "depth", kNone, kNone); }
};

std::shared_ptr<Model> finish(const L& features, const std::string& arch) {
  L scores = CreateDlLayerConvolution(features, "class_scores", {int64_t(1)}, {int64_t(1)}, {int64_t(1)}, 2, 1,
                                      {std::string("none")}, "none", kNone, kNone);
  L prob = CreateDlLayerSoftmax(scores, "softmax", kNone, kNone);
  L target = CreateDlLayerInput("segmentation_target", {int64_t(224), int64_t(224), int64_t(1)}, kNone, kNone);
  L weight = CreateDlLayerInput("pixel_weight", {int64_t(224), int64_t(224), int64_t(1)}, kNone, kNone);
  L loss = CreateDlLayerLossCrossEntropy(prob, target, weight, "cross_entropy", 1.0, kNone, kNone);
  auto m = std::make_shared<Model>(std::vector<LayerPtr>{loss.ptr});
  m->set_adapter(make_segmentation_adapter(*m));
  set_zoo_meta_data(*m, arch);
  return m;
}

L compact_features(SegBuilder& b, const L& img) {
  L e0 = b.cbr(img, 3, 16);
  L e1 = b.cbr(b.cbr(e0, 3, 32, 2), 3, 32);
  L e2 = b.cbr(b.cbr(e1, 3, 64, 2), 3, 64);
  L e3 = b.cbr(b.cbr(e2, 3, 128, 2), 3, 128);
  L d2 = b.cbr(b.concat(b.zoom_to(e3, e2), e2), 3, 64);
  L d1 = b.cbr(b.concat(b.zoom_to(d2, e1), e1), 3, 32);
  return b.cbr(b.concat(b.zoom_to(d1, e0), e0), 3, 16);
}

}  // namespace

std::shared_ptr<Model> segmentation_compact() {
  SegBuilder b;
  L img = image_input();
  return finish(compact_features(b, img), "segmentation_compact");
}

std::shared_ptr<Model> segmentation_enhanced() {
  SegBuilder b;
  L img = image_input();
  std::vector<L> skips = {b.cbr(b.cbr(img, 3, 32), 3, 32)};
  for (int64_t c : {64, 128, 256, 512}) skips.push_back(b.cbr(b.cbr(skips.back(), 3, c, 2), 3, c));
  L x = skips.back();
  for (size_t i = skips.size() - 1; i-- > 0;) {
    const int64_t c = i == 0 ? 32 : int64_t(32) << i;
    x = b.zoom_to(b.up(x, c), skips[i]);
    x = b.cbr(b.cbr(b.concat(x, skips[i]), 3, c), 3, c);
  }
  return finish(x, "segmentation_enhanced");
}

std::shared_ptr<Model> edge_extractor() {
  SegBuilder b;
  L img = image_input();
  auto m = finish(compact_features(b, img), "edge_extractor (segmentation_compact)");
  m->set_param("class_names", {std::string("background"), std::string("edge")});
  m->set_param("class_weights", {1.0, 8.0});
  return m;
}

}  // namespace opendl
