// Layer registry, parameter validation against each type's table, creation and cloning.
#include "graph/layer.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <sstream>

#include "backend/backend.h"

namespace opendl {
namespace {

std::map<std::string, LayerTypeInfo>& registry() {
  static std::map<std::string, LayerTypeInfo> r;
  return r;
}

const char* kind_name(ParamSpec::Kind k) {
  switch (k) {
    case ParamSpec::Kind::kInt: return "an integer";
    case ParamSpec::Kind::kReal: return "a number";
    case ParamSpec::Kind::kNumber: return "a number";
    case ParamSpec::Kind::kString: return "a string";
    case ParamSpec::Kind::kIntOrString: return "an integer or a string";
    case ParamSpec::Kind::kNumberOrString: return "a number or a string";
  }
  return "?";
}

// Checks one parameter value against its spec and normalises it (ints given for reals become reals).
Tuple validate(const ParamSpec& s, Tuple v, int code) {
  auto bad = [&](const std::string& why) {
    fail(code, "invalid value " + to_string(v) + " for parameter '" + s.name + "': " + why);
  };
  if (v.size() < s.min_len || v.size() > s.max_len) {
    std::string n = s.min_len == s.max_len ? std::to_string(s.min_len)
                                            : std::to_string(s.min_len) + " to " + std::to_string(s.max_len);
    bad("expected " + n + " value(s), got " + std::to_string(v.size()));
  }
  for (auto& e : v) {
    bool ok = false;
    switch (s.kind) {
      case ParamSpec::Kind::kInt:
        if (is_real(e)) {
          const double d = std::get<double>(e);
          if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) {  // no 64-bit integer: the cast would be undefined
            std::ostringstream os;
            os.precision(15);
            os << "must lie in [" << s.lo << ", " << s.hi << "]";
            bad(os.str());
          }
          if (d == std::floor(d)) e = static_cast<int64_t>(d);
        }
        ok = is_int(e); break;
      case ParamSpec::Kind::kReal:
      case ParamSpec::Kind::kNumber:
        if (is_int(e)) e = static_cast<double>(std::get<int64_t>(e));
        ok = is_real(e); break;
      case ParamSpec::Kind::kString: ok = is_string(e); break;
      case ParamSpec::Kind::kIntOrString: ok = is_int(e) || is_string(e); break;
      case ParamSpec::Kind::kNumberOrString:
        if (is_int(e)) e = static_cast<double>(std::get<int64_t>(e));
        ok = is_real(e) || is_string(e); break;
    }
    if (!ok) bad(std::string("expected ") + kind_name(s.kind));
    if (is_string(e) && !s.choices.empty()) {
      const auto& str = std::get<std::string>(e);
      if (std::find(s.choices.begin(), s.choices.end(), str) == s.choices.end()) {
        std::string allowed;
        for (auto& c : s.choices) allowed += (allowed.empty() ? "'" : ", '") + c + "'";
        bad("allowed are " + allowed);
      }
    }
    if (is_number(e)) {
      double d = as_double(e);
      if (!std::isfinite(d) || d < s.lo || d > s.hi) {
        std::ostringstream os;
        os.precision(15);
        os << "must lie in [" << s.lo << ", " << s.hi << "]";
        bad(os.str());
      }
    }
  }
  return v;
}

}  // namespace

void register_layer_type(LayerTypeInfo info) {
  auto& r = registry();
  // Every layer may be marked as a default output of apply_dl_model.
  info.params.push_back(gen("is_inference_output", ParamSpec::Kind::kString, {std::string("false")}, {"true", "false"}));
  std::string t = info.type;
  r[t] = std::move(info);
}

const LayerTypeInfo& layer_type(const std::string& type) {
  auto it = registry().find(type);
  if (it == registry().end()) fail(err::kInvalidInputData, "unknown layer type '" + type + "'");
  return it->second;
}

Act Layer::fusable_activation() const { return Act::kNone; }

const Tuple& Layer::param(const std::string& k) const {
  auto it = params_.find(k);
  if (it == params_.end()) fail(err::kInternal, "layer '" + name_ + "' has no parameter '" + k + "'");
  return it->second;
}
int64_t Layer::int_param(const std::string& k, size_t i) const {
  const auto& t = param(k);
  const auto& v = t.at(std::min(i, t.size() - 1));
  return is_int(v) ? std::get<int64_t>(v) : static_cast<int64_t>(as_double(v));
}
double Layer::real_param(const std::string& k, size_t i) const {
  const auto& t = param(k);
  return as_double(t.at(std::min(i, t.size() - 1)));
}
std::string Layer::str_param(const std::string& k, size_t i) const {
  const auto& t = param(k);
  const auto& v = t.at(std::min(i, t.size() - 1));
  return is_string(v) ? std::get<std::string>(v) : to_string(v);
}
bool Layer::bool_param(const std::string& k) const {
  const auto& v = param(k).at(0);
  if (is_string(v)) return std::get<std::string>(v) == "true";
  return as_double(v) != 0.0;
}

ParamSpec pos_int(const std::string& n, size_t min_len, size_t max_len, double lo, double hi) {
  ParamSpec s; s.name = n; s.kind = ParamSpec::Kind::kInt; s.min_len = min_len; s.max_len = max_len;
  s.lo = lo; s.hi = hi; s.positional = true; return s;
}
ParamSpec pos_real(const std::string& n, double lo, double hi) {
  ParamSpec s; s.name = n; s.kind = ParamSpec::Kind::kReal; s.lo = lo; s.hi = hi; s.positional = true; return s;
}
ParamSpec pos_str(const std::string& n, std::vector<std::string> choices) {
  ParamSpec s; s.name = n; s.kind = ParamSpec::Kind::kString; s.choices = std::move(choices); s.positional = true;
  return s;
}
ParamSpec gen(const std::string& n, ParamSpec::Kind k, Tuple dflt, std::vector<std::string> choices, double lo,
              double hi, size_t min_len, size_t max_len) {
  ParamSpec s; s.name = n; s.kind = k; s.dflt = std::move(dflt); s.choices = std::move(choices);
  s.lo = lo; s.hi = hi; s.min_len = min_len; s.max_len = max_len; return s;
}

std::vector<ParamSpec> filler_param_specs(bool with_bias) {
  using K = ParamSpec::Kind;
  std::vector<ParamSpec> v = {
      gen("weight_filler", K::kString, {std::string("xavier")}, {"xavier", "msra", "const"}),
      gen("weight_filler_const_val", K::kReal, {0.5}),
      gen("weight_filler_variance_norm", K::kString, {std::string("norm_in")}, {"norm_in", "norm_out", "norm_average"}),
      gen("learning_rate_multiplier", K::kReal, {1.0}, {}, 0.0),
      // opendl extension: the name of a layer of the same type and blob shapes whose weights (and bias) this
      // layer uses instead of its own (see Network); '' = own weights.
      gen("weights_shared_with", K::kString, {std::string("")}),
  };
  if (with_bias) {
    v.push_back(gen("bias_term", K::kString, {std::string("true")}, {"true", "false"}));
    v.push_back(gen("bias_filler", K::kString, {std::string("const")}, {"xavier", "msra", "const"}));
    v.push_back(gen("bias_filler_const_val", K::kReal, {0.0}));
    v.push_back(gen("bias_filler_variance_norm", K::kString, {std::string("norm_in")}, {"norm_in", "norm_out", "norm_average"}));
    v.push_back(gen("learning_rate_multiplier_bias", K::kReal, {1.0}, {}, 0.0));
  }
  return v;
}

void apply_filler_params(const Layer& l, BlobSpec& s, bool bias) {
  std::string p = bias ? "bias_" : "weight_";
  std::string f = l.str_param(p + "filler");
  s.filler = f == "xavier" ? Filler::kXavier : f == "msra" ? Filler::kMsra : Filler::kConst;
  s.const_val = l.real_param(p + "filler_const_val");
  s.variance_norm = l.str_param(p + "filler_variance_norm");
  s.lr_mult = l.real_param(bias ? "learning_rate_multiplier_bias" : "learning_rate_multiplier");
}

namespace {
void finish_layer(Layer& l) {
  l.configure();
  std::vector<Shape4> in;
  for (auto& p : l.inputs_) in.push_back(p->shape_);
  l.shape_ = l.infer(in);
}

void check_name(const std::string& name) {
  if (name.empty()) fail(err::kInvalidName, "layer_name must not be empty");
  if (name.find('\0') != std::string::npos)  // files and HALCON store names as C strings
    fail(err::kInvalidName, "layer_name must not contain a NUL character");
}
}  // namespace

LayerPtr create_layer(const std::string& type, const std::vector<LayerPtr>& inputs, const std::string& name,
                      const std::vector<Tuple>& positional, const Tuple& gen_names, const Tuple& gen_values,
                      int first_position) {
  const auto& info = layer_type(type);
  const int gen_name_pos = first_position + int(positional.size()), gen_value_pos = gen_name_pos + 1;
  check_name(name);
  if ((int)inputs.size() < info.min_inputs || (int)inputs.size() > info.max_inputs)
    fail(err::kWrongNumValues1, "layer type '" + type + "' takes " + std::to_string(info.min_inputs) +
                                    (info.max_inputs != info.min_inputs ? " or more" : "") + " input layer(s), got " +
                                    std::to_string(inputs.size()));
  for (auto& p : inputs)
    if (!p) fail(err::kInvalidHandle, "an input layer handle is invalid");
  LayerPtr l = info.make();
  l->type_ = type;
  l->name_ = name;
  l->inputs_ = inputs;
  l->info_ = &info;
  size_t pi = 0;
  for (const auto& s : info.params) {
    if (!s.positional) { l->params_[s.name] = s.dflt; continue; }
    if (pi >= positional.size()) fail(err::kInternal, "missing positional parameter '" + s.name + "'");
    l->params_[s.name] = validate(s, positional[pi], 1300 + first_position + int(pi));
    ++pi;
  }
  // Generic parameters: names must be strings known to the layer type; one value per name unless the
  // counts match a single name with a multi-value tuple.
  if (gen_names.size() != gen_values.size() && gen_names.size() != 1)
    fail(1400 + gen_value_pos, "gen_param_name has " + std::to_string(gen_names.size()) +
                                    " entries but gen_param_value has " + std::to_string(gen_values.size()));
  for (size_t i = 0; i < gen_names.size(); ++i) {
    if (!is_string(gen_names[i])) fail(1200 + gen_name_pos, "gen_param_name entries must be strings");
    const std::string& gn = std::get<std::string>(gen_names[i]);
    auto it = std::find_if(info.params.begin(), info.params.end(),
                           [&](const ParamSpec& s) { return s.name == gn && !s.positional; });
    if (it == info.params.end()) {
      std::string allowed;
      for (auto& s : info.params)
        if (!s.positional) allowed += (allowed.empty() ? "'" : ", '") + s.name + "'";
      fail(err::kUnsupportedGenParam, "unknown gen_param_name '" + gn + "' for a " + type + " layer (allowed: " +
                                          (allowed.empty() ? "none" : allowed) + ")");
    }
    Tuple v = gen_names.size() == 1 ? gen_values : Tuple{gen_values[i]};
    l->params_[gn] = validate(*it, v, err::kUnsupportedGenValue);
  }
  finish_layer(*l);
  return l;
}

LayerPtr restore_layer(const std::string& type, const std::vector<LayerPtr>& inputs, const std::string& name,
                       const ParamMap& params) {
  const auto& info = layer_type(type);
  check_name(name);
  if ((int)inputs.size() < info.min_inputs || (int)inputs.size() > info.max_inputs)
    fail(err::kInvalidInputData, "layer '" + name + "' of type '" + type + "' has " + std::to_string(inputs.size()) +
                                     " inputs");
  for (auto& [k, v] : params)
    if (std::none_of(info.params.begin(), info.params.end(), [&](const ParamSpec& s) { return s.name == k; }))
      fail(err::kInvalidInputData, "layer '" + name + "' of type '" + type + "' has no parameter '" + k + "'");
  LayerPtr l = info.make();
  l->type_ = type;
  l->name_ = name;
  l->inputs_ = inputs;
  l->info_ = &info;
  for (const auto& s : info.params) {
    auto it = params.find(s.name);
    if (it == params.end()) {
      if (s.positional) fail(err::kInvalidInputData, "layer '" + name + "' lacks parameter '" + s.name + "'");
      l->params_[s.name] = s.dflt;
    } else {
      l->params_[s.name] = validate(s, it->second, s.positional ? err::kWrongValue3 : err::kUnsupportedGenValue);
    }
  }
  finish_layer(*l);
  return l;
}

LayerPtr clone_layer(const Layer& src, const std::vector<LayerPtr>& new_inputs) {
  LayerPtr l = src.info_->make();
  l->type_ = src.type_;
  l->name_ = src.name_;
  l->inputs_ = new_inputs;
  l->info_ = src.info_;
  l->params_ = src.params_;
  finish_layer(*l);
  return l;
}

}  // namespace opendl
