// The built-in models under HALCON's file names (zoo_*.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace opendl {
class Model;
// The model a bare HALCON file name such as 'pretrained_dl_classifier_compact.hdl' stands for, or nullptr.
std::shared_ptr<Model> make_builtin_model(const std::string& file_name);
std::vector<std::string> builtin_model_names();
}  // namespace opendl
