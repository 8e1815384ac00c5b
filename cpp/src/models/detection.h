// Detection ('detection' model type, detection.cpp): the model creation behind create_dl_model_detection. Its
// box geometry lives in layers/boxes.h, shared with the generic detection layers.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "layers/boxes.h"
#include "models/model.h"

namespace opendl {

// create_dl_model_detection: `read` reads the backbone (a built-in name or a model file).
std::shared_ptr<Model> create_detection_model(const std::string& backbone, int64_t num_classes,
                                              const std::map<std::string, Tuple>& param,
                                              const std::function<std::shared_ptr<Model>(const std::string&)>& read);
std::unique_ptr<ModelAdapter> make_empty_detection_adapter();

}  // namespace opendl
