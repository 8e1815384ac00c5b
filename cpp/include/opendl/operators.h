// The C++ operators, named as in HALCON's C++ interface (CreateDlLayerConvolution, TrainDlModelBatch, ...),
// with HALCON's parameter order. Tuple parameters take {} for HALCON's empty tuple.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "opendl/dict.h"
#include "opendl/model.h"

namespace opendl {

// Generic constructor behind every CreateDlLayer*: `positional` holds the operator's control parameters
// between layer_name and the generic parameters, in operator order.
// `first_position`: the operator parameter (1-based) of positional[0], for the error codes (see create_layer).
HDlLayer CreateDlLayer(const std::string& type, const std::vector<HDlLayer>& inputs, const std::string& layer_name,
                       const std::vector<Tuple>& positional, const Tuple& gen_param_name, const Tuple& gen_param_value,
                       int first_position = 3);

HDlLayer CreateDlLayerInput(const std::string& layer_name, const Tuple& shape, const Tuple& gen_param_name,
                            const Tuple& gen_param_value);
HDlLayer CreateDlLayerConvolution(const HDlLayer& input, const std::string& layer_name, const Tuple& kernel_size,
                                  const Tuple& dilation, const Tuple& stride, int64_t num_kernel, int64_t groups,
                                  const Tuple& padding, const std::string& activation, const Tuple& gen_param_name,
                                  const Tuple& gen_param_value);
HDlLayer CreateDlLayerBatchNormalization(const HDlLayer& input, const std::string& layer_name, const Value& momentum,
                                         double epsilon, const std::string& activation, const Tuple& gen_param_name,
                                         const Tuple& gen_param_value);
HDlLayer CreateDlLayerActivation(const HDlLayer& input, const std::string& layer_name,
                                 const std::string& activation_type, const Tuple& gen_param_name,
                                 const Tuple& gen_param_value);
HDlLayer CreateDlLayerPooling(const HDlLayer& input, const std::string& layer_name, const Tuple& kernel_size,
                              const Tuple& stride, const Tuple& padding, const std::string& mode,
                              const Tuple& gen_param_name, const Tuple& gen_param_value);
HDlLayer CreateDlLayerDense(const HDlLayer& input, const std::string& layer_name, int64_t num_out,
                            const Tuple& gen_param_name, const Tuple& gen_param_value);
HDlLayer CreateDlLayerDropout(const HDlLayer& input, const std::string& layer_name, double probability,
                              const Tuple& gen_param_name, const Tuple& gen_param_value);
HDlLayer CreateDlLayerSoftmax(const HDlLayer& input, const std::string& layer_name, const Tuple& gen_param_name,
                              const Tuple& gen_param_value);
HDlLayer CreateDlLayerConcat(const std::vector<HDlLayer>& inputs, const std::string& layer_name,
                             const std::string& axis, const Tuple& gen_param_name, const Tuple& gen_param_value);
HDlLayer CreateDlLayerElementwise(const std::vector<HDlLayer>& inputs, const std::string& layer_name,
                                  const std::string& operation, const Tuple& coefficients,
                                  const Tuple& gen_param_name, const Tuple& gen_param_value);
HDlLayer CreateDlLayerIdentity(const HDlLayer& input, const std::string& layer_name, const Tuple& gen_param_name,
                               const Tuple& gen_param_value);
HDlLayer CreateDlLayerReshape(const HDlLayer& input, const std::string& layer_name, const Tuple& shape,
                              const Tuple& gen_param_name, const Tuple& gen_param_value);
HDlLayer CreateDlLayerLossCrossEntropy(const HDlLayer& input, const HDlLayer& target, const HDlLayer& weights,
                                       const std::string& layer_name, double loss_weight,
                                       const Tuple& gen_param_name, const Tuple& gen_param_value);

// Detection layers (layouts, parameters and rules: cpp/src/layers/box_layers.cpp).
HDlLayer CreateDlLayerAnchors(const HDlLayer& input, const HDlLayer& input_image, const std::string& layer_name,
                              const Tuple& aspect_ratios, int64_t num_subscales, const Tuple& angles,
                              const Tuple& gen_param_name, const Tuple& gen_param_value);
// The outputs of create_dl_layer_box_targets; the cls_ and box_ ones per level, modes not requested empty.
struct DlBoxTargetLayers {
  std::vector<HDlLayer> cls_target, cls_weight, box_target, box_weight, num_fg_instances, assigned_idxs;
};
// One layer per requested output, named from layer_names in the order cls_target, cls_weight, box_target,
// box_weight (one per level each), num_fg_instances, assigned_idxs; all read one assignment layer named
// '<first name>_assignment'. gtmask must be empty: instance masks ('mask_weight') are not offered.
DlBoxTargetLayers CreateDlLayerBoxTargets(const std::vector<HDlLayer>& box_proposal, const HDlLayer& gtbox,
                                          const std::vector<HDlLayer>& gtmask, const Tuple& layer_names,
                                          const std::string& input_mode, const Tuple& output_modes,
                                          int64_t num_classes, const Tuple& gen_param_name,
                                          const Tuple& gen_param_value);
// box_delta may be empty: the boxes are taken as they are.
HDlLayer CreateDlLayerBoxProposals(const std::vector<HDlLayer>& class_score, const std::vector<HDlLayer>& box_delta,
                                   const std::vector<HDlLayer>& box, const HDlLayer& input_image,
                                   const std::string& layer_name, const Tuple& gen_param_name,
                                   const Tuple& gen_param_value);

HDlModel CreateDlModel(const std::vector<HDlLayer>& output_layers);
// A RetinaNet-style detector on a classifier backbone (built-in name or model file); the dict holds the keys
// of spec B.3 (an empty dict: all defaults).
HDlModel CreateDlModelDetection(const std::string& backbone, int64_t num_classes,
                                const HDict& dlmodel_detection_param);
void SetDlModelParam(const HDlModel& model, const std::string& gen_param_name, const Tuple& gen_param_value);
Tuple GetDlModelParam(const HDlModel& model, const std::string& gen_param_name);
TrainResult TrainDlModelBatch(const HDlModel& model, const std::vector<Sample>& dlsample_batch);
std::vector<Result> ApplyDlModel(const HDlModel& model, const std::vector<Sample>& dlsample_batch,
                                 const std::vector<std::string>& outputs);
Tuple GetDlLayerParam(const HDlLayer& layer, const std::string& gen_param_name);
Tensor GetDlModelLayerWeights(const HDlModel& model, const std::string& layer_name, const std::string& weights_type);
void SetDlModelLayerWeights(const Tensor& weights, const HDlModel& model, const std::string& layer_name,
                            const std::string& weights_type);
Tensor GetDlModelLayerActivations(const HDlModel& model, const std::string& layer_name);
// Layer-output gradients of the last training step are kept only with the model parameter
// 'keep_layer_gradients' 'true' (set before training); by default their buffers are shared (7788 otherwise).
Tensor GetDlModelLayerGradients(const HDlModel& model, const std::string& layer_name);
// optimize_dl_model_for_inference for the devices of this build (HALCON takes a device handle; here its
// runtime and, for 'gpu', the CUDA device index): precision 'float32' on runtime 'cpu' or 'gpu'. Returns a copy
// of the model on that device with 'optimize_for_inference' 'true' and 'precision_is_converted' 'true' (the
// source is unchanged); the report holds 'runtime', 'precision', 'folded_layers' (the batch normalisations
// folded into the convolutions before them) and 'fused_layers' (residual sums and ReLU layers computed by the
// convolutions or batch normalisations before them).
HDlModel OptimizeDlModelForInference(const HDlModel& model, const std::string& runtime, const std::string& precision,
                                     HDict* conversion_report, int64_t gpu = 0);

// Files. ReadDlModel also takes the bare names of the built-in models ('pretrained_dl_classifier_compact.hdl',
// ...) when no file of that name exists. Model files are opendl containers (see dict.h).
HDlModel ReadDlModel(const std::string& file_name);
void WriteDlModel(const HDlModel& model, const std::string& file_name);
std::vector<uint8_t> SerializeDlModel(const HDlModel& model);
HDlModel DeserializeDlModel(const std::vector<uint8_t>& serialized_item);
std::vector<int64_t> LoadDlModelWeights(const HDlModel& source, const HDlModel& target);
HDict GetDlModelMetaData(const HDlModel& model);                  // get_dl_model_param(model, 'meta_data')
void SetDlModelMetaData(const HDlModel& model, const HDict& meta);  // set_dl_model_param(model, 'meta_data', dict)
HDict ReadDict(const std::string& file_name);
void WriteDict(const HDict& dict, const std::string& file_name);

// System.
void SetSeed(uint64_t seed);      // seed for models created afterwards ('seed_rand')
uint64_t GetSeed();
// A seed for the models the calling thread creates until ClearThreadSeed, in place of 'seed_rand' (which
// other threads and GetSeed keep seeing): seeded model creation without touching process-wide state.
void SetThreadSeed(uint64_t seed);
void ClearThreadSeed();
void SetThreadNum(int n);         // OpenMP threads of the CPU backend ('thread_num')
int GetThreadNum();
// Deterministic training for the calling thread (opendl extra, used by opendl.tools): bit-identical weights
// and losses whatever the thread count, at the cost of running weight-gradient, batch-normalisation and
// inner-product primitives single-threaded.
void SetDeterministic(bool on);
bool GetDeterministic();

}  // namespace opendl
