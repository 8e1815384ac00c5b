// Dict: HALCON's dictionary and opendl's universal container. Keys are ints or strings (insertion order is
// kept); values are tuples (ints, reals, strings and nested dicts as handles) or iconic objects (images as
// Tensors). read/write_dict and read/write_dl_model store a Dict in one versioned, checksummed binary file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "opendl/tensor.h"
#include "opendl/tuple.h"

namespace opendl {

class Dict;
using DictPtr = std::shared_ptr<Dict>;
using DictKey = std::variant<int64_t, std::string>;
// A tuple element inside a dict: a number, a string, or a nested dict (HALCON stores it as a handle).
using DictElement = std::variant<int64_t, double, std::string, DictPtr>;
using DictTuple = std::vector<DictElement>;
using DictValue = std::variant<DictTuple, Tensor>;

std::string key_repr(const DictKey& k);  // 'name' or 7, for error messages

class Dict {
 public:
  // Sets (replaces in place, keeping the key's position) or appends a key.
  void set(const DictKey& key, DictValue value);
  const DictValue* find(const DictKey& key) const;
  bool contains(const DictKey& key) const { return find(key) != nullptr; }
  bool erase(const DictKey& key);
  const std::vector<std::pair<DictKey, DictValue>>& items() const { return items_; }
  size_t size() const { return items_.size(); }

  // Typed conveniences; they throw Error 2894 for a missing key and 2896 for a value of another kind.
  void set_tuple(const DictKey& key, const Tuple& t);
  Tuple get_tuple(const DictKey& key) const;      // numbers and strings only
  void set_object(const DictKey& key, Tensor t) { set(key, std::move(t)); }
  const Tensor& get_object(const DictKey& key) const;
  void set_dict(const DictKey& key, DictPtr d) { set(key, DictTuple{std::move(d)}); }
  DictPtr get_dict(const DictKey& key) const;      // a 1-element tuple holding a dict

 private:
  const DictValue& at(const DictKey& key) const;
  std::vector<std::pair<DictKey, DictValue>> items_;
  std::map<DictKey, size_t> index_;
};

// HALCON's C++ handle class for dicts: copies share the dict.
struct HDict {
  DictPtr ptr = std::make_shared<Dict>();
};

// Error codes a container read or write reports, so that dict and model files keep HALCON's own codes.
struct ContainerCodes {
  int not_found, corrupt, version, write;
};
constexpr ContainerCodes kDictCodes{5200, 5238, 2403, 3142};
constexpr ContainerCodes kModelCodes{5200, 7780, 7782, 7781};

// Serialised form: header (magic, format version, payload size, CRC-32 of payload and header) + payload.
std::vector<uint8_t> serialize_dict(const Dict& d);
DictPtr deserialize_dict(const uint8_t* data, size_t size, const ContainerCodes& codes = kDictCodes);
// Writes atomically: a temporary file in the target's directory, flushed, then renamed over the target.
void write_dict_file(const Dict& d, const std::string& path, const ContainerCodes& codes = kDictCodes);
DictPtr read_dict_file(const std::string& path, const ContainerCodes& codes = kDictCodes);

}  // namespace opendl
