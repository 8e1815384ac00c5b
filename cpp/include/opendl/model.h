// Public handle types and sample/result containers of the C++ API. HDlLayer and HDlModel are shared handles
// like HALCON's HHandle: copies refer to the same object.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "opendl/tensor.h"
#include "opendl/tuple.h"

namespace opendl {

class Layer;
class Model;

struct HDlLayer {
  std::shared_ptr<Layer> ptr;
};
struct HDlModel {
  std::shared_ptr<Model> ptr;
};

// A DLSample: keys named like the model's input layers. Images are Tensors of shape (H, W) or (H, W, C),
// float32; other inputs are tuples of numbers filling the input's (depth, height, width) in that order.
using SampleValue = std::variant<Tuple, Tensor>;
using Sample = std::map<std::string, SampleValue>;
// DLTrainResult: 'total_loss', one entry per loss layer (its weighted value) and 'regularization'.
using TrainResult = std::map<std::string, double>;
// DLResult: per requested output layer, the sample's activation as a (H, W, C) float32 tensor; typed models
// add their result keys as tuples (e.g. 'classification_class_ids').
using Result = std::map<std::string, SampleValue>;

}  // namespace opendl
