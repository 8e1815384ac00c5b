// opendl_bench: native training-step and inference benchmark of opendl's C++ core (no Python in the loop).
//
// Models: cnn (5 x [conv 3x3 + batch norm + ReLU], max pooling after the first three, global average pooling,
// dense: the network of bench/bench_cpu_train_step.py), and the built-in classifiers compact, resnet18,
// resnet50 and mobilenetv2 (pretrained_dl_classifier_*.hdl, the networks users train). One training step =
// one TrainDlModelBatch call (SGD with momentum, batch of generated images); inference = one ApplyDlModel
// call on the same batch. Reports the median over repetitions of images/s and the achieved GFLOP/s, counting
// 2 FLOPs per multiply-add of the convolution, transposed-convolution and dense layers (forward; training adds
// the weight-gradient pass for every such layer and the data-gradient pass for those not fed by an input
// layer), and the share of the machine's fp32 FMA peak, measured once at start (--peak-only: just that).
//
// Against the installed package (or in the source tree with -DOPENDL_BUILD_BENCHMARKS=ON, see CMakeLists.txt):
//   cmake -S bench -B build-bench -Dopendl_DIR="$(python -m opendl --cmakedir)" && cmake --build build-bench
//   build-bench/opendl_bench --model all --batch 16 --size 224 [--profile]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <opendl/opendl.h>

#include "graph/network.h"
#include "models/model.h"

namespace {

using namespace opendl;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// --- FMA peak ---------------------------------------------------------------------------------------------
// Independent chains of vector FMAs (more chains than FMA latency x ports), one instance per thread.
constexpr int kChains = 12;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(float(i) * 1e-3f);
  const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0];
}
__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i) * 1e-3f);
  const __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-4f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  return _mm512_reduce_add_ps(acc[0]) + _mm512_reduce_add_ps(acc[kChains - 1]);
}
#endif

struct Peak {
  double gflops = 0;  // all threads
  int lanes = 0;      // fp32 lanes per FMA instruction measured (8: AVX2, 16: AVX-512; 0: not measured)
};

Peak measure_peak(int threads) {
  Peak p;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  if (!avx512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return p;
  p.lanes = avx512 ? 16 : 8;
  const int64_t iters = 20000000;
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < 3; ++rep) {
    auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
    {
      float r = avx512 ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
#pragma omp atomic
      sink += r;
    }
    double s = seconds_since(t0);
    best = std::max(best, double(threads) * double(iters) * kChains * p.lanes * 2.0 / s / 1e9);
  }
  p.gflops = best;
#endif
  return p;
}

// --- models -----------------------------------------------------------------------------------------------
struct Args {
  std::vector<std::string> models;
  int64_t batch = 16, size = 0, steps = 5, warmup = 2, reps = 3, classes = 10, threads = 0;
  bool train = true, infer = true, peak_only = false, profile = false, optimize = false;
};

HDlModel build_cnn(const Args& a, int64_t size) {
  HDlLayer x = CreateDlLayerInput("image", {size, size, int64_t(3)}, {}, {});
  HDlLayer lab = CreateDlLayerInput("image_label_id", {int64_t(1), int64_t(1), int64_t(1)}, {}, {});
  HDlLayer wts = CreateDlLayerInput("weights", {int64_t(1), int64_t(1), int64_t(1)}, {}, {});
  const int64_t widths[] = {16, 32, 64, 64, 128};
  for (int i = 0; i < 5; ++i) {
    const std::string n = std::to_string(i);
    x = CreateDlLayerConvolution(x, "conv" + n, {int64_t(3)}, {int64_t(1)}, {int64_t(1)}, widths[i], 1,
                                 {std::string("half_kernel_size")}, "none", {}, {});
    x = CreateDlLayerBatchNormalization(x, "bn" + n, 0.9, 1e-5, "relu", {}, {});
    if (i < 3)
      x = CreateDlLayerPooling(x, "pool" + n, {int64_t(2), int64_t(2)}, {int64_t(2), int64_t(2)},
                               {std::string("none")}, "maximum", {}, {});
  }
  x = CreateDlLayerPooling(x, "gap", {int64_t(1), int64_t(1)}, {int64_t(1), int64_t(1)}, {std::string("none")},
                           "global_average", {}, {});
  x = CreateDlLayerDense(x, "fc", a.classes, {}, {});
  HDlLayer sm = CreateDlLayerSoftmax(x, "softmax", {}, {});
  return CreateDlModel({CreateDlLayerLossCrossEntropy(sm, lab, wts, "loss", 1.0, {}, {})});
}

HDlModel build(const Args& a, const std::string& name, int64_t size, bool& needs_weights) {
  HDlModel m;
  needs_weights = name == "cnn";
  if (name == "cnn") {
    m = build_cnn(a, size);
  } else {
    m = ReadDlModel("pretrained_dl_classifier_" + std::string(name == "mobilenetv2" ? "mobilenet_v2" : name) + ".hdl");
    SetDlModelParam(m, "image_dimensions", {size, size, int64_t(3)});
    Tuple ids;
    for (int64_t c = 0; c < a.classes; ++c) ids.push_back(c);
    SetDlModelParam(m, "class_ids", ids);
  }
  SetDlModelParam(m, "batch_size", {a.batch});
  SetDlModelParam(m, "solver_type", {std::string("sgd")});
  SetDlModelParam(m, "learning_rate", {0.001});
  SetDlModelParam(m, "momentum", {0.9});
  return m;
}

// Multiply-adds of one forward pass at the current batch size; `bwd_data` receives those of the data-gradient
// pass (layers fed only by input layers need none).
double forward_macs(const HDlModel& m, double& bwd_data) {
  const Network& net = m.ptr->net();
  const auto& slots = net.slots();
  double total = 0;
  bwd_data = 0;
  for (const LayerSlot& s : slots) {
    const Layer& l = *s.layer;
    double macs = 0;
    if (l.type() == "convolution" || l.type() == "transposed_convolution") {
      const Tuple& k = l.param("kernel_size");
      double kk = as_double(k[0]) * as_double(k.size() > 1 ? k[1] : k[0]);
      const double groups = double(l.int_param("groups"));
      if (l.type() == "convolution")
        macs = double(s.shape.numel()) * double(s.in_shapes[0].c) / groups * kk;
      else
        macs = double(s.in_shapes[0].numel()) * double(s.shape.c) / groups * kk;
    } else if (l.type() == "dense") {
      const Shape4& in = s.in_shapes[0];
      macs = double(in.numel()) * double(s.shape.c);
    }
    total += macs;
    bool from_input = true;
    for (int j : s.inputs) from_input = from_input && slots[size_t(j)].layer->is_input();
    if (!from_input) bwd_data += macs;
  }
  return total;
}

std::vector<Sample> make_batch(const Args& a, int64_t size, bool with_weights) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<Sample> b;
  for (int64_t i = 0; i < a.batch; ++i) {
    Tensor t({size, size, int64_t(3)});
    float* p = t.f32();
    for (int64_t j = 0; j < t.numel(); ++j) p[j] = nd(rng);
    Sample s{{"image", t}, {"image_label_id", Tuple{int64_t(i % a.classes)}}};
    if (with_weights) s["weights"] = Tuple{1.0};
    b.push_back(std::move(s));
  }
  return b;
}

template <class F>
std::vector<double> time_reps(const Args& a, F&& step) {
  for (int64_t i = 0; i < a.warmup; ++i) step();
  std::vector<double> ms;
  for (int64_t r = 0; r < a.reps; ++r) {
    auto t0 = Clock::now();
    for (int64_t i = 0; i < a.steps; ++i) step();
    ms.push_back(seconds_since(t0) * 1e3 / double(a.steps));
  }
  return ms;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

void report(const char* what, const std::string& model, const Args& a, int64_t size, const std::vector<double>& ms,
            double flops, const Peak& peak) {
  const double med = median(ms);
  const double gf = flops / (med * 1e-3) / 1e9;
  std::printf("%-12s %-9s batch %3lld  %3lldx%-3lld  %9.2f ms  %8.1f images/s  %7.1f GFLOP/s", model.c_str(), what,
              (long long)a.batch, (long long)size, (long long)size, med, double(a.batch) * 1e3 / med, gf);
  if (peak.gflops > 0) std::printf("  %5.1f %% of peak", 100.0 * gf / peak.gflops);
  std::printf("   (spread %.2f..%.2f ms)\n", *std::min_element(ms.begin(), ms.end()),
              *std::max_element(ms.begin(), ms.end()));
  std::fflush(stdout);
}

// Per-layer time of `steps` training steps (or inference calls), the largest first, and the time outside the
// layers (sample packing, solver update, ...).
template <class F>
void profile(const Args& a, const HDlModel& m, const char* what, F&& step) {
  Network& net = m.ptr->net();
  net.set_profiling(true);
  auto t0 = Clock::now();
  for (int64_t i = 0; i < a.steps; ++i) step();
  const double total = seconds_since(t0);
  struct Row {
    std::string name, type, shape;
    double f, b;
  };
  std::vector<Row> rows;
  double in_layers = 0;
  const auto& t = net.layer_times();
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i].forward_calls == 0 && t[i].backward_calls == 0) continue;
    const LayerSlot& sl = net.slots()[i];
    std::string type = sl.layer->type();
    if (type == "convolution" && sl.layer->int_param("groups") > 1)
      type += sl.layer->int_param("groups") == sl.in_shapes[0].c ? " dw" : " grp";
    if (type.rfind("convolution", 0) == 0) {
      const Tuple& k = sl.layer->param("kernel_size");
      type += " " + std::to_string(int64_t(as_double(k[0]))) + "x" +
              std::to_string(int64_t(as_double(k.size() > 1 ? k[1] : k[0])));
    }
    const std::string shape = std::to_string(sl.shape.c) + "x" + std::to_string(sl.shape.h) + "x" +
                              std::to_string(sl.shape.w);
    rows.push_back({sl.layer->name(), type, shape, t[i].forward_s, t[i].backward_s});
    in_layers += t[i].forward_s + t[i].backward_s;
  }
  net.set_profiling(false);
  std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.f + x.b > y.f + y.b; });
  const double per = 1e3 / double(a.steps);
  std::printf("  per-layer time of %s (%.2f ms in all):\n", what, total * per);
  for (const Row& r : rows)
    std::printf("    %-24s %-22s %-14s fwd %8.3f ms  bwd %8.3f ms  %5.1f %%\n", r.name.c_str(), r.type.c_str(),
                r.shape.c_str(), r.f * per, r.b * per, 100.0 * (r.f + r.b) / total);
  std::printf("    %-47s %8.3f ms  %5.1f %%\n", "outside the layers (packing, solver, ...)", (total - in_layers) * per,
              100.0 * (total - in_layers) / total);
}

int usage() {
  std::fprintf(stderr,
               "usage: opendl_bench [--model all|cnn|compact|resnet18|resnet50|mobilenetv2[,...]] [--batch N]\n"
               "                    [--size S (default: 64 for cnn, 224 otherwise)] [--steps N] [--warmup N]\n"
               "                    [--reps N] [--threads N] [--classes N] [--train-only | --infer-only]\n"
               "                    [--peak-only] [--profile] [--optimize]\n"
               "--profile: after the timed steps, per-layer forward / backward time of further ones\n"
               "--optimize: also time inference of the model's optimize_dl_model_for_inference copy\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  std::string models = "all";
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto num = [&](int64_t& dst) {
      const char* v = next();
      if (!v) return false;
      dst = std::atoll(v);
      return dst > 0;
    };
    bool ok = true;
    if (s == "--model") {
      const char* v = next();
      ok = v != nullptr;
      if (ok) models = v;
    } else if (s == "--batch") ok = num(a.batch);
    else if (s == "--size") ok = num(a.size);
    else if (s == "--steps") ok = num(a.steps);
    else if (s == "--warmup") { const char* v = next(); ok = v != nullptr; if (ok) a.warmup = std::atoll(v); }
    else if (s == "--reps") ok = num(a.reps);
    else if (s == "--threads") ok = num(a.threads);
    else if (s == "--classes") ok = num(a.classes);
    else if (s == "--train-only") a.infer = false;
    else if (s == "--infer-only") a.train = false;
    else if (s == "--peak-only") a.peak_only = true;
    else if (s == "--profile") a.profile = true;
    else if (s == "--optimize") a.optimize = true;
    else ok = false;
    if (!ok) return usage();
  }
  if (models == "all") models = "cnn,compact,resnet18,resnet50,mobilenetv2";
  for (size_t p = 0; p <= models.size();) {
    size_t q = models.find(',', p);
    if (q == std::string::npos) q = models.size();
    std::string m = models.substr(p, q - p);
    if (m != "cnn" && m != "compact" && m != "resnet18" && m != "resnet50" && m != "mobilenetv2") return usage();
    a.models.push_back(m);
    p = q + 1;
  }
  if (a.threads > 0) SetThreadNum(int(a.threads));
  const int threads = GetThreadNum();

  const Peak peak = measure_peak(threads);
  std::printf("opendl_bench: %d threads; fp32 FMA peak %.1f GFLOP/s (%s, %d threads)\n", threads, peak.gflops,
              peak.lanes == 16 ? "AVX-512" : peak.lanes == 8 ? "AVX2" : "not measured", threads);
  if (a.peak_only) return 0;
  try {
    for (const std::string& name : a.models) {
      const int64_t size = a.size ? a.size : (name == "cnn" ? 64 : 224);
      bool with_weights = false;
      HDlModel m = build(a, name, size, with_weights);
      std::vector<Sample> batch = make_batch(a, size, with_weights);
      // FLOPs are counted on the network as it runs (after the warm-up, at the batch's size).
      double bwd_data = 0, fwd = 0;
      if (a.train) {
        auto ms = time_reps(a, [&] { TrainDlModelBatch(m, batch); });
        fwd = 2.0 * forward_macs(m, bwd_data);
        report("train", name, a, size, ms, 2.0 * fwd + 2.0 * bwd_data, peak);
        if (a.profile) profile(a, m, "a training step", [&] { TrainDlModelBatch(m, batch); });
      }
      if (a.infer) {
        auto ms = time_reps(a, [&] { ApplyDlModel(m, batch, {}); });
        fwd = 2.0 * forward_macs(m, bwd_data);
        report("infer", name, a, size, ms, fwd, peak);
        if (a.profile) profile(a, m, "an inference call", [&] { ApplyDlModel(m, batch, {}); });
        if (a.optimize) {
          HDlModel opt = OptimizeDlModelForInference(m, "cpu", "float32", nullptr);
          auto oms = time_reps(a, [&] { ApplyDlModel(opt, batch, {}); });
          report("infer-opt", name, a, size, oms, fwd, peak);
          if (a.profile) profile(a, opt, "an optimized inference call", [&] { ApplyDlModel(opt, batch, {}); });
        }
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "opendl error %d in %s: %s\n", e.code(), e.op().c_str(), e.message().c_str());
    return 1;
  }
  return 0;
}
