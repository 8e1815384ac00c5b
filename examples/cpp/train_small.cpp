// Builds a small CNN with opendl's C++ operators (HALCON's C++ names), trains it a few steps on generated
// two-class images and checks the loss went down. Build against the installed package:
//   cmake -S examples/cpp -B build-example -Dopendl_DIR="$(python -m opendl --cmakedir)"
//   cmake --build build-example && (cd build-example && ctest --output-on-failure)
#include <opendl/opendl.h>

#include <cstdio>
#include <random>

int main() {
  using namespace opendl;
  try {
    SetSeed(7);
    HDlLayer img = CreateDlLayerInput("image", {int64_t(16), int64_t(16), int64_t(1)}, {}, {});
    HDlLayer lab = CreateDlLayerInput("image_label_id", {int64_t(1), int64_t(1), int64_t(1)}, {}, {});
    HDlLayer wts = CreateDlLayerInput("weights", {int64_t(1), int64_t(1), int64_t(1)}, {}, {});
    HDlLayer h = CreateDlLayerConvolution(img, "conv1", {int64_t(3)}, {int64_t(1)}, {int64_t(1)}, 8, 1,
                                          {std::string("half_kernel_size")}, "none", {}, {});
    h = CreateDlLayerBatchNormalization(h, "bn1", 0.9, 1e-4, "relu", {}, {});
    h = CreateDlLayerPooling(h, "pool1", {int64_t(2), int64_t(2)}, {int64_t(2), int64_t(2)}, {std::string("none")},
                             "maximum", {}, {});
    h = CreateDlLayerDense(h, "fc", 2, {}, {});
    HDlLayer sm = CreateDlLayerSoftmax(h, "softmax", {}, {});
    HDlLayer loss = CreateDlLayerLossCrossEntropy(sm, lab, wts, "loss", 1.0, {}, {});
    HDlModel model = CreateDlModel({loss});
    SetDlModelParam(model, "batch_size", {int64_t(8)});
    SetDlModelParam(model, "learning_rate", {0.01});

    // Class 0: bright left half; class 1: bright right half; plus noise.
    std::mt19937 rng(1);
    std::normal_distribution<float> noise(0.f, 0.3f);
    auto batch = [&](int n) {
      std::vector<Sample> b;
      for (int i = 0; i < n; ++i) {
        int cls = i % 2;
        Tensor t({16, 16});
        for (int y = 0; y < 16; ++y)
          for (int x = 0; x < 16; ++x) t.f32()[y * 16 + x] = ((x < 8) == (cls == 0) ? 1.f : 0.f) + noise(rng);
        b.push_back(Sample{{"image", t}, {"image_label_id", Tuple{int64_t(cls)}}, {"weights", Tuple{1.0}}});
      }
      return b;
    };
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      TrainResult r = TrainDlModelBatch(model, batch(8));
      if (step == 0) first = r["total_loss"];
      last = r["total_loss"];
      if (step % 10 == 0) std::printf("step %2d  total_loss %.4f\n", step, last);
    }
    std::printf("first loss %.4f, last loss %.4f\n", first, last);
    std::vector<Result> res = ApplyDlModel(model, batch(2), {"softmax"});
    std::printf("class-1 confidence of a class-0 image: %.3f, of a class-1 image: %.3f\n",
                std::get<Tensor>(res[0]["softmax"]).f32()[1], std::get<Tensor>(res[1]["softmax"]).f32()[1]);
    return last < 0.5 * first ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "opendl error %d in %s: %s\n", e.code(), e.op().c_str(), e.message().c_str());
    return 2;
  }
}
