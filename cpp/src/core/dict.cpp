// Dict storage: an insertion-ordered vector of items plus a key index.
#include "opendl/dict.h"

#include "opendl/error.h"

namespace opendl {

std::string key_repr(const DictKey& k) {
  if (std::holds_alternative<int64_t>(k)) return std::to_string(std::get<int64_t>(k));
  return "'" + std::get<std::string>(k) + "'";
}

void Dict::set(const DictKey& key, DictValue value) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    items_[it->second].second = std::move(value);
    return;
  }
  index_[key] = items_.size();
  items_.emplace_back(key, std::move(value));
}

const DictValue* Dict::find(const DictKey& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

bool Dict::erase(const DictKey& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < items_.size(); ++i) index_[items_[i].first] = i;
  return true;
}

const DictValue& Dict::at(const DictKey& key) const {
  const DictValue* v = find(key);
  if (!v) fail(err::kDictKey, "the dict has no key " + key_repr(key));
  return *v;
}

void Dict::set_tuple(const DictKey& key, const Tuple& t) {
  DictTuple d;
  d.reserve(t.size());
  for (auto& v : t) std::visit([&](auto&& x) { d.emplace_back(x); }, v);
  set(key, std::move(d));
}

Tuple Dict::get_tuple(const DictKey& key) const {
  const DictValue& v = at(key);
  if (!std::holds_alternative<DictTuple>(v)) fail(2896, "key " + key_repr(key) + " holds an object, not a tuple");
  Tuple t;
  for (auto& e : std::get<DictTuple>(v)) {
    if (std::holds_alternative<DictPtr>(e)) fail(2896, "key " + key_repr(key) + " holds a dict handle");
    if (auto* i = std::get_if<int64_t>(&e)) t.emplace_back(*i);
    else if (auto* r = std::get_if<double>(&e)) t.emplace_back(*r);
    else t.emplace_back(std::get<std::string>(e));
  }
  return t;
}

const Tensor& Dict::get_object(const DictKey& key) const {
  const DictValue& v = at(key);
  if (!std::holds_alternative<Tensor>(v)) fail(2896, "key " + key_repr(key) + " holds a tuple, not an object");
  return std::get<Tensor>(v);
}

DictPtr Dict::get_dict(const DictKey& key) const {
  const DictValue& v = at(key);
  const DictTuple* t = std::get_if<DictTuple>(&v);
  if (!t || t->size() != 1 || !std::holds_alternative<DictPtr>((*t)[0]))
    fail(2896, "key " + key_repr(key) + " does not hold one dict handle");
  return std::get<DictPtr>((*t)[0]);
}

}  // namespace opendl
