// The C++ operators with HALCON's names. Each wraps the generic machinery and stamps the operator name
// into any Error it throws, so messages read "create_dl_layer_convolution: ...".
#include "opendl/operators.h"

#include <omp.h>

#include <atomic>
#include <fstream>
#include <set>

#include "core/system.h"
#include "graph/layer.h"
#include "models/detection.h"
#include "models/model.h"
#include "models/zoo.h"

namespace opendl {
namespace {

std::atomic<int> g_threads{0};  // set_system('thread_num'); 0: OpenMP's default

// OpenMP's thread count is a per-thread setting: apply the process-wide one in the calling thread, so that a
// model trained on a background thread uses the same count as one trained on the main thread.
void sync_threads() {
  int n = g_threads.load();
  if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
}

template <class F>
auto op(const char* name, F&& f) -> decltype(f()) {
  sync_threads();
  try {
    return f();
  } catch (const Error& e) {
    if (!e.op().empty()) throw;
    throw Error(e.code(), name, e.message());
  } catch (const std::bad_alloc&) {
    throw Error(err::kHostMem, name, "out of host memory");
  } catch (const std::length_error&) {  // a container asked for more than it can hold
    throw Error(err::kHostMem, name, "out of host memory (a requested size exceeds what can be allocated)");
  }
}

std::vector<LayerPtr> ptrs(const std::vector<HDlLayer>& v) {
  std::vector<LayerPtr> out;
  for (auto& h : v) {
    if (!h.ptr) fail(err::kInvalidHandle, "a layer handle is invalid (null)");
    out.push_back(h.ptr);
  }
  return out;
}

Model& model_of(const HDlModel& m) {
  if (!m.ptr) fail(err::kInvalidHandle, "the model handle is invalid (cleared or null)");
  return *m.ptr;
}

std::atomic<uint64_t> g_seed{42};
thread_local bool t_has_seed = false;  // SetThreadSeed: this thread's models take t_seed, not g_seed
thread_local uint64_t t_seed = 0;
}  // namespace

uint64_t global_seed() { return t_has_seed ? t_seed : g_seed.load(); }
void SetSeed(uint64_t seed) { g_seed = seed; }
uint64_t GetSeed() { return g_seed.load(); }
void SetThreadSeed(uint64_t seed) {
  t_seed = seed;
  t_has_seed = true;
}
void ClearThreadSeed() { t_has_seed = false; }
void SetThreadNum(int n) {
  op("set_system", [&] {
    // beyond any machine's cores, small enough that starting the OpenMP team cannot exhaust memory
    if (n < 1 || n > 1024) fail(err::kWrongValue2, "'thread_num' must lie in [1, 1024], got " + std::to_string(n));
    g_threads = n;
    omp_set_num_threads(n);
  });
}
int GetThreadNum() {
  sync_threads();
  return omp_get_max_threads();
}
void SetDeterministic(bool on) { set_thread_deterministic(on); }
bool GetDeterministic() { return thread_deterministic(); }

HDlLayer CreateDlLayer(const std::string& type, const std::vector<HDlLayer>& inputs, const std::string& layer_name,
                       const std::vector<Tuple>& positional, const Tuple& gen_param_name, const Tuple& gen_param_value,
                       int first_position) {
  std::string opname = "create_dl_layer_" + (type == "batchnorm" ? std::string("batch_normalization") : type);
  return op(opname.c_str(), [&] {
    return HDlLayer{
        create_layer(type, ptrs(inputs), layer_name, positional, gen_param_name, gen_param_value, first_position)};
  });
}

HDlLayer CreateDlLayerInput(const std::string& n, const Tuple& shape, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("input", {}, n, {shape}, gn, gv, 2);
}
HDlLayer CreateDlLayerConvolution(const HDlLayer& in, const std::string& n, const Tuple& kernel_size,
                                  const Tuple& dilation, const Tuple& stride, int64_t num_kernel, int64_t groups,
                                  const Tuple& padding, const std::string& activation, const Tuple& gn,
                                  const Tuple& gv) {
  return CreateDlLayer("convolution", {in}, n,
                       {kernel_size, dilation, stride, {num_kernel}, {groups}, padding, {activation}}, gn, gv);
}
HDlLayer CreateDlLayerBatchNormalization(const HDlLayer& in, const std::string& n, const Value& momentum,
                                         double epsilon, const std::string& activation, const Tuple& gn,
                                         const Tuple& gv) {
  return CreateDlLayer("batchnorm", {in}, n, {{momentum}, {epsilon}, {activation}}, gn, gv);
}
HDlLayer CreateDlLayerActivation(const HDlLayer& in, const std::string& n, const std::string& t, const Tuple& gn,
                                 const Tuple& gv) {
  return CreateDlLayer("activation", {in}, n, {{t}}, gn, gv);
}
HDlLayer CreateDlLayerPooling(const HDlLayer& in, const std::string& n, const Tuple& kernel_size, const Tuple& stride,
                              const Tuple& padding, const std::string& mode, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("pooling", {in}, n, {kernel_size, stride, padding, {mode}}, gn, gv);
}
HDlLayer CreateDlLayerDense(const HDlLayer& in, const std::string& n, int64_t num_out, const Tuple& gn,
                            const Tuple& gv) {
  return CreateDlLayer("dense", {in}, n, {{num_out}}, gn, gv);
}
HDlLayer CreateDlLayerDropout(const HDlLayer& in, const std::string& n, double p, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("dropout", {in}, n, {{p}}, gn, gv);
}
HDlLayer CreateDlLayerSoftmax(const HDlLayer& in, const std::string& n, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("softmax", {in}, n, {}, gn, gv);
}
HDlLayer CreateDlLayerConcat(const std::vector<HDlLayer>& in, const std::string& n, const std::string& axis,
                             const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("concat", in, n, {{axis}}, gn, gv);
}
HDlLayer CreateDlLayerElementwise(const std::vector<HDlLayer>& in, const std::string& n, const std::string& operation,
                                  const Tuple& coefficients, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("elementwise", in, n, {{operation}, coefficients}, gn, gv);
}
HDlLayer CreateDlLayerIdentity(const HDlLayer& in, const std::string& n, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("identity", {in}, n, {}, gn, gv);
}
HDlLayer CreateDlLayerReshape(const HDlLayer& in, const std::string& n, const Tuple& shape, const Tuple& gn,
                              const Tuple& gv) {
  return CreateDlLayer("reshape", {in}, n, {shape}, gn, gv);
}
HDlLayer CreateDlLayerLossCrossEntropy(const HDlLayer& in, const HDlLayer& target, const HDlLayer& weights,
                                       const std::string& n, double loss_weight, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("loss_cross_entropy", {in, target, weights}, n, {{loss_weight}}, gn, gv, 5);
}

HDlLayer CreateDlLayerAnchors(const HDlLayer& in, const HDlLayer& image, const std::string& n, const Tuple& ratios,
                              int64_t num_subscales, const Tuple& angles, const Tuple& gn, const Tuple& gv) {
  return CreateDlLayer("anchors", {in, image}, n, {ratios, {num_subscales}, angles}, gn, gv, 4);
}

DlBoxTargetLayers CreateDlLayerBoxTargets(const std::vector<HDlLayer>& boxes, const HDlLayer& gt,
                                          const std::vector<HDlLayer>& gtmask, const Tuple& names,
                                          const std::string& input_mode, const Tuple& output_modes,
                                          int64_t num_classes, const Tuple& gn, const Tuple& gv) {
  return op("create_dl_layer_box_targets", [&] {
    static const std::vector<std::string> per_level = {"cls_target", "cls_weight", "box_target", "box_weight"};
    static const std::vector<std::string> global = {"num_fg_instances", "assigned_idxs"};
    if (boxes.empty()) fail(err::kWrongNumValues1, "dllayer_box_proposal needs at least one box layer");
    if (!gtmask.empty())
      fail(err::kWrongNumValues3, "dllayer_gtmask: instance masks ('mask_weight') are not supported; pass []");
    std::set<std::string> modes;
    for (auto& m : output_modes) {
      const std::string s = is_string(m) ? std::get<std::string>(m) : to_string(m);
      if (s == "mask_weight") fail(err::kWrongValue2, "output_modes: 'mask_weight' (instance masks) is not supported");
      if (std::find(per_level.begin(), per_level.end(), s) == per_level.end() &&
          std::find(global.begin(), global.end(), s) == global.end())
        fail(err::kWrongValue2, "output_modes: unknown mode '" + s + "'; allowed are 'cls_target', 'cls_weight', "
                                "'box_target', 'box_weight', 'num_fg_instances', 'assigned_idxs'");
      if (!modes.insert(s).second) fail(err::kWrongValue2, "output_modes names '" + s + "' twice");
    }
    if (modes.empty()) fail(err::kWrongNumValues2, "output_modes must name at least one output");
    size_t need = 0;
    for (auto& m : per_level) need += modes.count(m) ? boxes.size() : 0;
    for (auto& m : global) need += modes.count(m);
    if (names.size() != need)
      fail(err::kWrongNumValues4, "layer_names needs " + std::to_string(need) + " names (" +
                                      std::to_string(boxes.size()) + " per level for each per-level output mode, one "
                                      "for num_fg_instances and assigned_idxs), got " + std::to_string(names.size()));
    for (auto& n : names)
      if (!is_string(n)) fail(err::kWrongType1, "layer_names must be strings, got " + to_string(n));
    // Generic parameters: one value per name, or one name with a tuple; the assignment's go to it, the others
    // (is_inference_output) to each output layer.
    static const std::set<std::string> assignment = {"fg_iou_threshold", "bg_iou_threshold", "low_quality_matches",
                                                     "class_ids_no_orientation"};
    if (gn.size() != gv.size() && gn.size() != 1)
      fail(err::kWrongNumValues2, "gen_param_name has " + std::to_string(gn.size()) + " entries but gen_param_value " +
                                      std::to_string(gv.size()));
    Tuple an, av, on, ov;
    for (size_t i = 0; i < gn.size(); ++i) {
      if (!is_string(gn[i])) fail(err::kWrongType2, "gen_param_name entries must be strings");
      const bool to_a = assignment.count(std::get<std::string>(gn[i])) > 0;
      (to_a ? an : on).push_back(gn[i]);
      if (gn.size() == 1) (to_a ? av : ov) = gv;
      else (to_a ? av : ov).push_back(gv[i]);
    }
    std::vector<LayerPtr> in = ptrs(boxes);
    in.push_back(ptrs({gt})[0]);
    const std::string first = std::get<std::string>(names[0]);
    LayerPtr a = create_layer("box_assignment", in, first + "_assignment", {{input_mode}, {num_classes}}, an, av);
    DlBoxTargetLayers out;
    std::vector<HDlLayer>* slot[6] = {&out.cls_target, &out.cls_weight, &out.box_target, &out.box_weight,
                                      &out.num_fg_instances, &out.assigned_idxs};
    size_t k = 0;
    for (size_t m = 0; m < 6; ++m) {
      const std::string mode = m < 4 ? per_level[m] : global[m - 4];
      if (!modes.count(mode)) continue;
      for (size_t l = 0; l < (m < 4 ? boxes.size() : 1); ++l) {
        Tuple n2 = on, v2 = ov;
        if (n2.size() == 1 && v2.size() != 1) fail(err::kWrongNumValues2, "gen_param_value: one value per name");
        n2.push_back(std::string("output"));
        v2.push_back(mode);
        n2.push_back(std::string("level"));
        v2.push_back(int64_t(l));
        slot[m]->push_back(HDlLayer{create_layer("box_targets", {a, in.back()}, std::get<std::string>(names[k++]), {},
                                                 n2, v2)});
      }
    }
    return out;
  });
}

HDlLayer CreateDlLayerBoxProposals(const std::vector<HDlLayer>& scores, const std::vector<HDlLayer>& deltas,
                                   const std::vector<HDlLayer>& boxes, const HDlLayer& image, const std::string& n,
                                   const Tuple& gn, const Tuple& gv) {
  return op("create_dl_layer_box_proposals", [&] {
    if (scores.empty() || boxes.size() != scores.size() || (!deltas.empty() && deltas.size() != scores.size()))
      fail(err::kWrongNumValues1, "dllayer_class_score, dllayer_box_delta (or []) and dllayer_box need one layer per "
                                  "level each, got " + std::to_string(scores.size()) + ", " +
                                  std::to_string(deltas.size()) + " and " + std::to_string(boxes.size()));
    std::vector<HDlLayer> in = scores;
    in.insert(in.end(), deltas.begin(), deltas.end());
    in.insert(in.end(), boxes.begin(), boxes.end());
    in.push_back(image);
    Tuple names = gn, values = gv;
    if (deltas.empty()) {
      if (names.size() == 1 && values.size() != 1)
        fail(err::kWrongNumValues2, "gen_param_value: one value per name");
      names.push_back(std::string("apply_box_deltas"));
      values.push_back(std::string("false"));
    }
    return HDlLayer{create_layer("box_proposals", ptrs(in), n, {}, names, values)};
  });
}

HDlModel CreateDlModel(const std::vector<HDlLayer>& outputs) {
  return op("create_dl_model", [&] { return HDlModel{std::make_shared<Model>(ptrs(outputs))}; });
}
void SetDlModelParam(const HDlModel& m, const std::string& name, const Tuple& value) {
  op("set_dl_model_param", [&] { model_of(m).set_param(name, value); });
}
Tuple GetDlModelParam(const HDlModel& m, const std::string& name) {
  return op("get_dl_model_param", [&] { return model_of(m).get_param(name); });
}
TrainResult TrainDlModelBatch(const HDlModel& m, const std::vector<Sample>& batch) {
  return op("train_dl_model_batch", [&] { return model_of(m).train_batch(batch); });
}
std::vector<Result> ApplyDlModel(const HDlModel& m, const std::vector<Sample>& batch,
                                 const std::vector<std::string>& outputs) {
  return op("apply_dl_model", [&] { return model_of(m).apply(batch, outputs); });
}
Tuple GetDlLayerParam(const HDlLayer& l, const std::string& name) {
  return op("get_dl_layer_param", [&]() -> Tuple {
    if (!l.ptr) fail(err::kInvalidHandle, "the layer handle is invalid");
    const Layer& L = *l.ptr;
    if (name == "name") return {L.name()};
    if (name == "type") return {L.type()};
    if (name == "shape") return {L.shape().w, L.shape().h, L.shape().c};
    if (name == "input_layer") {
      Tuple t;
      for (auto& i : L.inputs()) t.push_back(i->name());
      return t;
    }
    auto it = L.params().find(name);
    if (it != L.params().end()) return it->second;
    Tuple extra;
    if (L.extra_param(name, extra)) return extra;
    std::string avail = "'name', 'type', 'shape', 'input_layer'";
    for (auto& kv : L.params()) avail += ", '" + kv.first + "'";
    fail(err::kWrongValue2, "a " + L.type() + " layer has no parameter '" + name + "' (available: " + avail + ")");
  });
}
Tensor GetDlModelLayerWeights(const HDlModel& m, const std::string& layer, const std::string& type) {
  return op("get_dl_model_layer_weights", [&] { return model_of(m).get_weights(layer, type); });
}
void SetDlModelLayerWeights(const Tensor& w, const HDlModel& m, const std::string& layer, const std::string& type) {
  op("set_dl_model_layer_weights", [&] { model_of(m).set_weights(w, layer, type); });
}
Tensor GetDlModelLayerActivations(const HDlModel& m, const std::string& layer) {
  return op("get_dl_model_layer_activations", [&] { return model_of(m).activations(layer); });
}
Tensor GetDlModelLayerGradients(const HDlModel& m, const std::string& layer) {
  return op("get_dl_model_layer_gradients", [&] { return model_of(m).gradients(layer); });
}

namespace {
std::shared_ptr<Model> read_model_file(const std::string& file_name) {
  std::ifstream probe(file_name, std::ios::binary);
  if (!probe) {
    if (auto m = make_builtin_model(file_name)) return m;
    std::string names;
    for (auto& n : builtin_model_names()) names += (names.empty() ? "'" : ", '") + n + "'";
    fail(err::kFileNotFound, "model file '" + file_name + "' not found (built-in models: " + names + ")");
  }
  DictPtr d = read_dict_file(file_name, kModelCodes);
  return Model::from_dict(*d, err::kFileRead);
}
}  // namespace

HDlModel ReadDlModel(const std::string& file_name) {
  return op("read_dl_model", [&] { return HDlModel{read_model_file(file_name)}; });
}
HDlModel CreateDlModelDetection(const std::string& backbone, int64_t num_classes,
                                const HDict& dlmodel_detection_param) {
  return op("create_dl_model_detection", [&] {
    std::map<std::string, Tuple> param;
    for (auto& [key, value] : dlmodel_detection_param.ptr->items()) {
      if (!std::holds_alternative<std::string>(key))
        fail(err::kWrongType3, "dlmodel_detection_param: keys must be strings, got " + key_repr(key));
      const std::string& k = std::get<std::string>(key);
      if (!std::holds_alternative<DictTuple>(value))
        fail(err::kWrongType3, "dlmodel_detection_param: '" + k + "' must be a tuple, not an image");
      Tuple t;
      for (auto& e : std::get<DictTuple>(value)) {
        if (std::holds_alternative<DictPtr>(e))
          fail(err::kWrongType3, "dlmodel_detection_param: '" + k + "' must hold numbers or strings, not a dict");
        std::visit([&](auto&& x) {
          if constexpr (!std::is_same_v<std::decay_t<decltype(x)>, DictPtr>) t.push_back(x);
        }, e);
      }
      param[k] = t;
    }
    return HDlModel{create_detection_model(backbone, num_classes, param, read_model_file)};
  });
}
void WriteDlModel(const HDlModel& m, const std::string& file_name) {
  op("write_dl_model", [&] { write_dict_file(*model_of(m).to_dict(), file_name, kModelCodes); });
}
std::vector<uint8_t> SerializeDlModel(const HDlModel& m) {
  return op("serialize_dl_model", [&] { return serialize_dict(*model_of(m).to_dict()); });
}
HDlModel OptimizeDlModelForInference(const HDlModel& m, const std::string& runtime, const std::string& precision,
                                     HDict* conversion_report, int64_t gpu) {
  return op("optimize_dl_model_for_inference", [&] {
    if (runtime != "cpu" && runtime != "gpu")
      fail(err::kWrongValue2, "conversion for runtime '" + runtime + "' is not available (available: 'cpu', 'gpu')");
    if (precision != "float32")
      fail(err::kWrongValue3, "precision '" + precision + "' is not available on the " + runtime +
                                  " device (available: 'float32')");
    DictPtr d = model_of(m).to_dict();
    std::shared_ptr<Model> c = Model::from_dict(*d, err::kInternal);
    if (runtime == "gpu") {  // the copy moves (and fails, the source untouched, where that GPU is unusable)
      c->set_param("gpu", {gpu});
      c->set_param("runtime", {std::string("gpu")});
    }
    c->set_param("optimize_for_inference", {std::string("true")});
    c->set_converted(true);
    auto report = std::make_shared<Dict>();
    report->set_tuple("runtime", {runtime});
    report->set_tuple("precision", {precision});
    Tuple folded;
    for (auto& n : c->net().foldable_layers()) folded.push_back(n);
    report->set_tuple("folded_layers", folded);
    Tuple fused;
    for (auto& n : c->net().fusable_layers()) fused.push_back(n);
    report->set_tuple("fused_layers", fused);
    if (conversion_report) *conversion_report = HDict{report};
    return HDlModel{c};
  });
}
HDlModel DeserializeDlModel(const std::vector<uint8_t>& bytes) {
  return op("deserialize_dl_model", [&] {
    DictPtr d = deserialize_dict(bytes.data(), bytes.size(), kModelCodes);
    return HDlModel{Model::from_dict(*d, err::kFileRead)};
  });
}
std::vector<int64_t> LoadDlModelWeights(const HDlModel& source, const HDlModel& target) {
  return op("load_dl_model_weights", [&] {
    Model& s = model_of(source);
    Model& t = model_of(target);
    if (&s == &t) fail(err::kWrongValue2, "source and target are the same model");
    return t.load_weights_from(s);
  });
}
HDict GetDlModelMetaData(const HDlModel& m) {
  return op("get_dl_model_param", [&] { return HDict{model_of(m).meta_data()}; });
}
void SetDlModelMetaData(const HDlModel& m, const HDict& meta) {
  op("set_dl_model_param", [&] {
    if (!meta.ptr) fail(err::kInvalidHandle, "'meta_data' needs a dict handle");
    model_of(m).set_meta_data(meta.ptr);
  });
}
HDict ReadDict(const std::string& file_name) {
  return op("read_dict", [&] { return HDict{read_dict_file(file_name)}; });
}
void WriteDict(const HDict& d, const std::string& file_name) {
  op("write_dict", [&] {
    if (!d.ptr) fail(err::kInvalidHandle, "the dict handle is invalid");
    write_dict_file(*d.ptr, file_name);
  });
}

}  // namespace opendl
