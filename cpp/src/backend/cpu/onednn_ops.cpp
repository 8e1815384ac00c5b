// CPU backend, oneDNN part: convolution, transposed convolution and dense layers as oneDNN primitives
// (pooling and batch normalisation are own kernels, norm_pool.cpp). Primitive descriptors and primitives are
// created once per key struct and cached; memory objects wrap the caller's pointers for each call.
// Convolutions let oneDNN choose its layouts (format_tag::any: blocked nChw8c / nChw16c activations and blocked
// weights, which select the direct jit kernels instead of gemm-based ones). The caller's activations are plain
// nchw or, where the network planned it, already in a blocked or channels-last layout (ConvKey::xb / yb), which
// the primitives then use as given; an operand whose layout differs from the primitive's is reordered within
// the call (reorder primitives cached with the convolution): the weights, plain activations, and for
// channels-last tensors the weight gradient's activations.
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/system.h"
#include "opendl/error.h"

namespace opendl {

namespace {
thread_local bool t_deterministic = false;
}  // namespace
void set_thread_deterministic(bool on) { t_deterministic = on; }
bool thread_deterministic() { return t_deterministic; }

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

engine& eng() {
  static engine e(engine::kind::cpu, 0);
  return e;
}

template <class K>
struct KeyHash {
  size_t operator()(const K& k) const {
    const auto* p = reinterpret_cast<const int64_t*>(&k);
    size_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof(K) / sizeof(int64_t); ++i) h = (h ^ static_cast<size_t>(p[i])) * 1099511628211ull;
    return h;
  }
};
template <class K>
struct KeyEq {
  bool operator()(const K& a, const K& b) const { return std::memcmp(&a, &b, sizeof(K)) == 0; }
};
// Primitives are cached per calling thread, shape key and thread count. oneDNN fixes a primitive's thread count
// (and with it the order of its reductions) when it is created. Each thread keeps its own primitives: a
// primitive created in one thread and executed in another crashed (gemm convolution writing its im2col buffer
// out of bounds), e.g. a model trained in a background thread and then applied in the main thread.
template <class K>
struct Threaded {
  K k;
  int64_t nthr;
};
template <class K, class V>
using Cache = std::unordered_map<Threaded<K>, std::shared_ptr<V>, KeyHash<Threaded<K>>, KeyEq<Threaded<K>>>;
template <class K>
Threaded<K> threaded(const K& k) { return Threaded<K>{k, omp_get_max_threads()}; }

// In deterministic mode, the primitives whose reduction order depends on the thread count are created and run
// with one thread (see core/system.h).
struct SingleThreadIfDeterministic {
  int prev = 0;
  SingleThreadIfDeterministic() {
    if (t_deterministic) {
      prev = omp_get_max_threads();
      omp_set_num_threads(1);
    }
  }
  ~SingleThreadIfDeterministic() {
    if (prev > 0) omp_set_num_threads(prev);
  }
};

memory mem(const memory::desc& d, const void* p) { return memory(d, eng(), const_cast<void*>(p)); }

// Converts oneDNN failures into opendl::Error so that nothing escapes as a foreign exception.
template <class F>
void guarded(const char* what, F&& f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    fail(err::kInternal, std::string("oneDNN ") + what + " failed: " + e.what());
  }
}

// --- convolution / transposed convolution ------------------------------------------------------------
// One operand of a primitive: the layout the primitive wants and the reorders from / to the plain user layout
// (none when they agree).
struct Operand {
  memory::desc user, inner;
  bool same = true;
  primitive to_inner, to_user;
  primitive to_user_acc;  // adds into the user's memory (sum post-op); empty where oneDNN offers none
  void init(const memory::desc& u, const memory::desc& i, bool in, bool out) {
    user = u;
    inner = i;
    same = u == i;
    if (same) return;
    if (in) to_inner = reorder(reorder::primitive_desc(eng(), u, eng(), i));
    if (out) {
      to_user = reorder(reorder::primitive_desc(eng(), i, eng(), u));
      try {
        post_ops po;
        po.append_sum(1.f);
        primitive_attr attr;
        attr.set_post_ops(po);
        to_user_acc = reorder(reorder::primitive_desc(eng(), i, eng(), u, attr));
      } catch (const dnnl::error&) {
        to_user_acc = primitive();
      }
    }
  }
};

struct ConvPrims {
  memory::desc x, w, b, y;
  convolution_forward::primitive_desc fwd_pd;
  deconvolution_forward::primitive_desc dfwd_pd;
  primitive fwd, bwd_data, bwd_w;
  Operand f_src, f_w, f_dst;          // forward
  Operand d_ddst, d_w, d_dsrc;        // backward data
  Operand w_src, w_ddst, w_dw;        // backward weights
};

// The operands of the three primitives, from the layouts oneDNN chose (same for the transposed convolution).
template <class Fwd, class Bd, class Bw>
void init_operands(ConvPrims& p, const Fwd& f, const Bd& bd, const Bw& bw) {
  p.f_src.init(p.x, f.src_desc(), true, false);
  p.f_w.init(p.w, f.weights_desc(), true, false);
  p.f_dst.init(p.y, f.dst_desc(), false, true);
  p.d_ddst.init(p.y, bd.diff_dst_desc(), true, false);
  p.d_w.init(p.w, bd.weights_desc(), true, false);
  p.d_dsrc.init(p.x, bd.diff_src_desc(), false, true);
  p.w_src.init(p.x, bw.src_desc(), true, false);
  p.w_ddst.init(p.y, bw.diff_dst_desc(), true, false);
  p.w_dw.init(p.w, bw.diff_weights_desc(), false, true);
}

// The caller-side layout of an activation of `lanes` lanes per position (ConvKey::xb / yb): plain nchw (0),
// channels-last nhwc (lanes == C, in the backend's channels-last mode), or channel-blocked nChw8c / nChw16c.
memory::desc activation_desc(const memory::dims& d, int64_t lanes) {
  if (lanes == 0) return memory::desc(d, dt::f32, tag::nchw);
  const bool fixed_block = (lanes == 8 || lanes == 16) && lanes == cpu_backend().activation_block();
  if (lanes == d[1] && !fixed_block) return memory::desc(d, dt::f32, tag::nhwc);
  return memory::desc(d, dt::f32, lanes == 16 ? tag::nChw16c : tag::nChw8c);
}

std::shared_ptr<ConvPrims> conv_prims(const ConvKey& k, Act act) {
  thread_local Cache<ConvKey, ConvPrims> cache[4];
  auto& c = cache[static_cast<int>(act)];
  auto it = c.find(threaded(k));
  if (it != c.end()) return it->second;
  auto p = std::make_shared<ConvPrims>();
  memory::dims strides = {k.sh, k.sw}, dil = {k.dh - 1, k.dw - 1}, pl = {k.pt, k.pl}, pr = {k.pb, k.pr};
  p->x = activation_desc({k.n, k.ic, k.ih, k.iw}, k.xb);
  p->y = activation_desc({k.n, k.oc, k.oh, k.ow}, k.yb);
  if (k.groups > 1)
    p->w = memory::desc({k.groups, k.oc / k.groups, k.ic / k.groups, k.kh, k.kw}, dt::f32, tag::goihw);
  else
    p->w = memory::desc({k.oc, k.ic, k.kh, k.kw}, dt::f32, tag::oihw);
  p->b = k.bias ? memory::desc({k.oc}, dt::f32, tag::x) : memory::desc();
  primitive_attr attr;
  post_ops po;
  if (act != Act::kNone) {
    algorithm a = act == Act::kRelu ? algorithm::eltwise_relu
                  : act == Act::kSigmoid ? algorithm::eltwise_logistic : algorithm::eltwise_tanh;
    po.append_eltwise(a, 0.f, 0.f);
  }
  if (k.sum) po.append_sum(1.f);  // dst = conv + dst (the residual y holds), then the optional ReLU
  if (k.sum == 2) po.append_eltwise(algorithm::eltwise_relu, 0.f, 0.f);
  if (po.len() > 0) attr.set_post_ops(po);
  // Layouts: a planned (non-plain) activation layout of the caller is given to oneDNN as the layout to use, so
  // no reorder runs; plain operands and the weights are left to oneDNN ('any': blocked, which selects its direct
  // jit kernels over gemm-based ones, the operands then reordered within each call). Should oneDNN have only a
  // reference kernel for the caller's layouts, all activations fall back to 'any'. Bias stays plain. (Plain nchw
  // for pointwise 1x1 convolutions, oneDNN's gemm convolution, measured slower: MobileNetV2 +11 %, ResNet-50 +30 %.)
  const memory::desc aw(p->w.get_dims(), dt::f32, tag::any);
  auto is_ref = [](const char* impl) { return std::strncmp(impl, "ref", 3) == 0; };
  if (!k.transposed) {
    const prop_kind fwd_kind = k.inference ? prop_kind::forward_inference : prop_kind::forward_training;
    for (bool keep : {true, false}) {
      const memory::desc ax = keep && k.xb ? p->x : memory::desc(p->x.get_dims(), dt::f32, tag::any);
      const memory::desc ay = keep && k.yb ? p->y : memory::desc(p->y.get_dims(), dt::f32, tag::any);
      p->fwd_pd = convolution_forward::primitive_desc(eng(), fwd_kind, algorithm::convolution_direct, ax, aw,
                                                      p->b, ay, strides, dil, pl, pr, attr);
      if (k.inference) {
        // Forward only (inference plans): no backward primitives; with a sum, y is read as well as written.
        if (keep && (k.xb || k.yb) && is_ref(p->fwd_pd.impl_info_str())) continue;
        p->fwd = convolution_forward(p->fwd_pd);
        p->f_src.init(p->x, p->fwd_pd.src_desc(), true, false);
        p->f_w.init(p->w, p->fwd_pd.weights_desc(), true, false);
        p->f_dst.init(p->y, p->fwd_pd.dst_desc(), k.sum != 0, true);
        break;
      }
      auto bd = convolution_backward_data::primitive_desc(eng(), algorithm::convolution_direct, ax, aw, ay,
                                                          strides, dil, pl, pr, p->fwd_pd);
      // The weight gradient lets oneDNN choose its layouts in any case: for channels-last activations it picks
      // its blocked direct kernel, which even with the two operand reorders beats its nhwc kernel (measured on
      // the AVX2 machine: ResNet-18 3x3 layers 25-27 ms against 29-39 ms at batch 16).
      const memory::desc wx(p->x.get_dims(), dt::f32, tag::any), wy(p->y.get_dims(), dt::f32, tag::any);
      auto bw = convolution_backward_weights::primitive_desc(eng(), algorithm::convolution_direct, wx, aw, p->b,
                                                             wy, strides, dil, pl, pr, p->fwd_pd);
      if (keep && (k.xb || k.yb) && (is_ref(p->fwd_pd.impl_info_str()) || is_ref(bd.impl_info_str()) ||
                                     is_ref(bw.impl_info_str())))
        continue;
      p->fwd = convolution_forward(p->fwd_pd);
      p->bwd_data = convolution_backward_data(bd);
      p->bwd_w = convolution_backward_weights(bw);
      init_operands(*p, p->fwd_pd, bd, bw);
      break;
    }
  } else {
    const memory::desc ax(p->x.get_dims(), dt::f32, tag::any), ay(p->y.get_dims(), dt::f32, tag::any);
    p->dfwd_pd = deconvolution_forward::primitive_desc(eng(), prop_kind::forward_training,
                                                       algorithm::deconvolution_direct, ax, aw, p->b, ay,
                                                       strides, dil, pl, pr, attr);
    p->fwd = deconvolution_forward(p->dfwd_pd);
    auto bd = deconvolution_backward_data::primitive_desc(eng(), algorithm::deconvolution_direct, ax, aw, ay,
                                                          strides, dil, pl, pr, p->dfwd_pd);
    p->bwd_data = deconvolution_backward_data(bd);
    auto bw = deconvolution_backward_weights::primitive_desc(eng(), algorithm::deconvolution_direct, ax, aw,
                                                             p->b, ay, strides, dil, pl, pr, p->dfwd_pd);
    p->bwd_w = deconvolution_backward_weights(bw);
    init_operands(*p, p->dfwd_pd, bd, bw);
  }
  c[threaded(k)] = p;
  return p;
}

// --- dense -----------------------------------------------------------------------------------------------
struct DensePrims {
  memory::desc x, w, b, y;
  primitive fwd, bwd_data, bwd_w;
};

std::shared_ptr<DensePrims> dense_prims(const DenseKey& k) {
  thread_local Cache<DenseKey, DensePrims> cache;
  auto it = cache.find(threaded(k));
  if (it != cache.end()) return it->second;
  auto p = std::make_shared<DensePrims>();
  p->x = memory::desc({k.n, k.ic}, dt::f32, tag::nc);
  p->w = memory::desc({k.oc, k.ic}, dt::f32, tag::oi);
  p->b = k.bias ? memory::desc({k.oc}, dt::f32, tag::x) : memory::desc();
  p->y = memory::desc({k.n, k.oc}, dt::f32, tag::nc);
  auto f = inner_product_forward::primitive_desc(eng(), prop_kind::forward_training, p->x, p->w, p->b, p->y);
  p->fwd = inner_product_forward(f);
  p->bwd_data = inner_product_backward_data(inner_product_backward_data::primitive_desc(eng(), p->x, p->w, p->y, f));
  p->bwd_w = inner_product_backward_weights(
      inner_product_backward_weights::primitive_desc(eng(), p->x, p->w, p->b, p->y, f));
  cache[threaded(k)] = p;
  return p;
}

// Output of a backward primitive: the destination itself, or a temporary added afterwards.
struct GradOut {
  float* dst;
  size_t n;
  bool accumulate;
  std::vector<float> tmp;
  GradOut(float* d, size_t count, bool acc) : dst(d), n(count), accumulate(acc) {
    if (acc && d) tmp.assign(count, 0.f);
  }
  void* target() { return accumulate ? tmp.data() : dst; }
  void finish(Backend& be) {
    if (accumulate && dst) be.axpy(n, 1.f, tmp.data(), dst);
  }
};

void run(primitive& p, std::unordered_map<int, memory> args) {
  stream s(eng());
  p.execute(s, args);
  s.wait();
}

}  // namespace

namespace {
// Per-thread buffers for operands in oneDNN's layouts (slot: which operand of a call), grown as needed.
float* inner_buffer(int slot, const memory::desc& d) {
  thread_local std::vector<float> bufs[4];
  auto& b = bufs[slot];
  const size_t n = (d.get_size() + sizeof(float) - 1) / sizeof(float);
  if (b.size() < n) b.resize(n);
  return b.data();
}
// An input operand in the primitive's layout: the user's memory itself, or a reordered copy.
memory inner_input(Operand& o, int slot, const float* user) {
  if (o.same) return mem(o.user, user);
  memory in = mem(o.inner, inner_buffer(slot, o.inner));
  run(o.to_inner, {{DNNL_ARG_FROM, mem(o.user, user)}, {DNNL_ARG_TO, in}});
  return in;
}
// An output operand: written by the primitive in its layout, then `finish` reorders it to the user's memory,
// overwriting it or adding to it (accumulate: a reorder with a sum post-op, or a temporary and an axpy).
struct InnerOutput {
  Operand& o;
  float* user;
  bool accumulate;
  std::vector<float> tmp;
  memory m;
  InnerOutput(Operand& op, int slot, float* u, bool acc) : o(op), user(u), accumulate(acc) {
    if (!o.same && (!accumulate || o.to_user_acc)) {
      m = mem(o.inner, inner_buffer(slot, o.inner));
    } else if (accumulate) {
      tmp.assign((o.inner.get_size() + sizeof(float) - 1) / sizeof(float), 0.f);
      m = mem(o.inner, tmp.data());
    } else {
      m = mem(o.user, u);
    }
  }
  void finish(Backend& be) {
    if (!o.same) {
      if (accumulate && o.to_user_acc) {
        run(o.to_user_acc, {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, mem(o.user, user)}});
        return;
      }
      float* dst = user;
      if (accumulate) {  // reorder into a plain temporary, then add
        std::vector<float> plain((o.user.get_size() + sizeof(float) - 1) / sizeof(float));
        run(o.to_user, {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, mem(o.user, plain.data())}});
        be.axpy(plain.size(), 1.f, plain.data(), user);
        return;
      }
      run(o.to_user, {{DNNL_ARG_FROM, m}, {DNNL_ARG_TO, mem(o.user, dst)}});
    } else if (accumulate) {
      be.axpy(tmp.size(), 1.f, tmp.data(), user);
    }
  }
};
}  // namespace

// The activation layouts of the convolutions here, probed once on a typical layer (64 -> 64 channels, 3x3): the
// channel block of oneDNN's direct kernels ('any' choice: 8 with AVX2, 16 with AVX-512), and whether it has its
// brgemm kernels for channels-last (nhwc) activations. The environment variable OPENDL_ACTIVATION_LAYOUT
// ('channels_last', 'blocked', 'plain') overrides the network's choice (graph/network.cpp).
namespace {
const std::string& layout_override() {
  static const std::string v = [] {
    const char* e = std::getenv("OPENDL_ACTIVATION_LAYOUT");
    return std::string(e ? e : "");
  }();
  return v;
}
convolution_forward::primitive_desc probe_conv(tag t) {
  const memory::dims x = {1, 64, 16, 16}, w = {64, 64, 3, 3};
  return convolution_forward::primitive_desc(eng(), prop_kind::forward_training, algorithm::convolution_direct,
                                             memory::desc(x, dt::f32, t), memory::desc(w, dt::f32, tag::any),
                                             memory::desc(), memory::desc(x, dt::f32, t), {1, 1}, {0, 0}, {1, 1},
                                             {1, 1});
}
}  // namespace

int64_t CpuBackend::activation_block() const {
  static const int64_t block = [] {
    if (layout_override() == "plain") return int64_t(0);
    try {
      auto pd = probe_conv(tag::any);
      for (int64_t b : {int64_t(16), int64_t(8)})
        if (pd.dst_desc() == memory::desc({1, 64, 16, 16}, dt::f32, b == 16 ? tag::nChw16c : tag::nChw8c)) return b;
    } catch (const dnnl::error&) {
    }
    return int64_t(0);
  }();
  return block;
}

int CpuBackend::channels_last() const {
  static const int v = [] {
    if (layout_override() == "plain" || layout_override() == "blocked") return 0;
    if (layout_override() == "channels_last") return 2;
    try {
      return std::strncmp(probe_conv(tag::nhwc).impl_info_str(), "brg", 3) == 0 ? 1 : 0;
    } catch (const dnnl::error&) {
    }
    return 0;
  }();
  return v;
}

namespace {
// Weights reordered into a primitive's layout, kept by the caller (PreparedWeights) across inference calls.
struct ReorderedWeights {
  memory::desc desc;
  const float* from = nullptr;
  HostFloats data;
};
memory prepared_weights(Operand& o, const float* w, PreparedWeights* pw) {
  if (o.same || !pw) return inner_input(o, 1, w);
  auto* r = pw->kind == PreparedWeights::kReordered ? static_cast<ReorderedWeights*>(pw->data.get()) : nullptr;
  if (!r || pw->made_from != pw->version || r->desc != o.inner || r->from != w) {
    auto fresh = std::make_shared<ReorderedWeights>();
    fresh->desc = o.inner;
    fresh->from = w;
    fresh->data.resize((o.inner.get_size() + sizeof(float) - 1) / sizeof(float));
    run(o.to_inner, {{DNNL_ARG_FROM, mem(o.user, w)}, {DNNL_ARG_TO, mem(o.inner, fresh->data.data())}});
    pw->data = fresh;
    pw->kind = PreparedWeights::kReordered;
    pw->made_from = pw->version;
    r = fresh.get();
  }
  return mem(o.inner, r->data.data());
}
}  // namespace

void CpuBackend::conv_forward(const ConvKey& k, Act act, const float* x, const float* w, const float* b, float* y,
                              PreparedWeights* prepared) {
  guarded("convolution forward", [&] {
    SingleThreadIfDeterministic single;
    if (winograd_applies(k, act)) {
      winograd_forward(k, act, x, w, b, y, prepared);
      return;
    }
    auto p = conv_prims(k, act);
    InnerOutput out(p->f_dst, 2, y, false);
    // A sum post-op reads the destination: one in another layout than the caller's is filled from it first.
    if (k.sum && !p->f_dst.same) run(p->f_dst.to_inner, {{DNNL_ARG_FROM, mem(p->f_dst.user, y)}, {DNNL_ARG_TO, out.m}});
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, inner_input(p->f_src, 0, x)},
                                            {DNNL_ARG_WEIGHTS, prepared_weights(p->f_w, w, prepared)},
                                            {DNNL_ARG_DST, out.m}};
    if (k.bias) args[DNNL_ARG_BIAS] = mem(p->b, b);
    run(p->fwd, args);
    out.finish(*this);
  });
}

// Weight (and bias) gradients, then the data gradient; dy is reordered once when both primitives read it in
// the same layout (slot 3 keeps it across both).
void CpuBackend::conv_backward(const ConvKey& k, const float* x, const float* dy, const float* w, float* dx,
                               float* dw, float* db, bool accumulate_dx, bool accumulate_dw) {
  guarded("convolution backward", [&] {
    // The jit kernels' reduction order (weights) and split (data) follow the thread count.
    SingleThreadIfDeterministic single;
    auto p = conv_prims(k, Act::kNone);
    memory ddst = inner_input(p->w_ddst, 3, dy);
    {
      InnerOutput out(p->w_dw, 2, dw, accumulate_dw);
      GradOut ob(k.bias ? db : nullptr, k.oc, accumulate_dw);
      std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, inner_input(p->w_src, 0, x)},
                                              {DNNL_ARG_DIFF_DST, ddst},
                                              {DNNL_ARG_DIFF_WEIGHTS, out.m}};
      if (k.bias) args[DNNL_ARG_DIFF_BIAS] = mem(p->b, ob.target());
      run(p->bwd_w, args);
      out.finish(*this);
      ob.finish(*this);
    }
    if (!dx) return;
    if (winograd_applies_backward_data(k)) {
      winograd_backward_data(k, dy, w, dx, accumulate_dx);
      return;
    }
    InnerOutput out(p->d_dsrc, 2, dx, accumulate_dx);
    run(p->bwd_data, {{DNNL_ARG_DIFF_DST, p->d_ddst.inner == p->w_ddst.inner ? ddst : inner_input(p->d_ddst, 0, dy)},
                      {DNNL_ARG_WEIGHTS, inner_input(p->d_w, 1, w)},
                      {DNNL_ARG_DIFF_SRC, out.m}});
    out.finish(*this);
  });
}

void CpuBackend::dense_forward(const DenseKey& k, const float* x, const float* w, const float* b, float* y) {
  guarded("dense forward", [&] {
    SingleThreadIfDeterministic single;
    auto p = dense_prims(k);
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, mem(p->x, x)}, {DNNL_ARG_WEIGHTS, mem(p->w, w)}, {DNNL_ARG_DST, mem(p->y, y)}};
    if (k.bias) args[DNNL_ARG_BIAS] = mem(p->b, b);
    run(p->fwd, args);
  });
}

void CpuBackend::dense_backward_data(const DenseKey& k, const float* dy, const float* w, float* dx, bool accumulate) {
  guarded("dense backward data", [&] {
    SingleThreadIfDeterministic single;
    auto p = dense_prims(k);
    GradOut o(dx, k.n * k.ic, accumulate);
    run(p->bwd_data, {{DNNL_ARG_DIFF_DST, mem(p->y, dy)}, {DNNL_ARG_WEIGHTS, mem(p->w, w)},
                      {DNNL_ARG_DIFF_SRC, mem(p->x, o.target())}});
    o.finish(*this);
  });
}

void CpuBackend::dense_backward_weights(const DenseKey& k, const float* x, const float* dy, float* dw, float* db,
                                        bool accumulate) {
  guarded("dense backward weights", [&] {
    SingleThreadIfDeterministic single;
    auto p = dense_prims(k);
    GradOut ow(dw, k.oc * k.ic, accumulate), ob(k.bias ? db : nullptr, k.oc, accumulate);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, mem(p->x, x)},
                                            {DNNL_ARG_DIFF_DST, mem(p->y, dy)},
                                            {DNNL_ARG_DIFF_WEIGHTS, mem(p->w, ow.target())}};
    if (k.bias) args[DNNL_ARG_DIFF_BIAS] = mem(p->b, ob.target());
    run(p->bwd_w, args);
    ow.finish(*this);
    ob.finish(*this);
  });
}

}  // namespace opendl
