// ModelAdapter: what makes a network a model of a HALCON type. It turns DLSample dicts into the network's
// input tensors (validating labels and keys first), turns outputs into DLResult entries, owns the type's
// model parameters (class ids, image size, ...) and saves them in the model file. A layer-built model uses
// the generic adapter: each input layer takes the sample key of its name and results are layer outputs.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "opendl/dict.h"
#include "opendl/model.h"

namespace opendl {

class Model;

class ModelAdapter {
 public:
  virtual ~ModelAdapter() = default;
  virtual std::string type() const = 0;
  virtual std::unique_ptr<ModelAdapter> clone() const = 0;
  // Network inputs for a training batch / an inference batch; throws Error naming the bad sample and key.
  virtual std::vector<Sample> train_inputs(const Model&, const std::vector<Sample>& batch) const { return batch; }
  virtual std::vector<Sample> apply_inputs(const Model&, const std::vector<Sample>& batch) const { return batch; }
  // The layers apply_dl_model computes for the requested outputs (empty request: the type's default
  // results) when the request is one of the type's; empty: the generic rule (layer names).
  virtual std::vector<std::string> output_layers(const std::vector<std::string>& /*requested*/) const { return {}; }
  // Turns those layers' outputs (one (H, W, C) tensor per layer and sample) into the requested DLResult entries.
  virtual void make_results(const Model&, std::vector<Result>& /*results*/,
                            const std::vector<std::string>& /*requested*/) const {}
  // Type-specific parameters; return false when the name is not theirs.
  virtual bool set_param(Model&, const std::string& /*name*/, const Tuple& /*value*/) { return false; }
  virtual bool get_param(const Model&, const std::string& /*name*/, Tuple& /*out*/) const { return false; }
  virtual std::vector<std::string> param_names() const { return {}; }
  virtual void save(Dict&) const {}
  virtual void load(const Dict&) {}
};

std::unique_ptr<ModelAdapter> make_generic_adapter();
// Creates the adapter saved under `type` in a model file (throws Error(code) for an unknown type).
std::unique_ptr<ModelAdapter> make_adapter(const std::string& type, int code);

}  // namespace opendl

namespace opendl {
// Type 'classification' for a model whose graph has the classification roles (see classification.cpp).
std::unique_ptr<ModelAdapter> make_classification_adapter(const Model& m);
}  // namespace opendl
