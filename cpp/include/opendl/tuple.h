// Value and Tuple: HALCON's control data. A Tuple is an ordered list of ints (64-bit), reals (double) and
// strings; operators take and return Tuples the way HALCON's HTuple works (a scalar is a 1-element tuple).
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace opendl {

using Value = std::variant<int64_t, double, std::string>;
using Tuple = std::vector<Value>;

inline bool is_int(const Value& v) { return std::holds_alternative<int64_t>(v); }
inline bool is_real(const Value& v) { return std::holds_alternative<double>(v); }
inline bool is_string(const Value& v) { return std::holds_alternative<std::string>(v); }
inline bool is_number(const Value& v) { return is_int(v) || is_real(v); }
inline double as_double(const Value& v) {
  return is_int(v) ? static_cast<double>(std::get<int64_t>(v)) : std::get<double>(v);
}
std::string to_string(const Value& v);
std::string to_string(const Tuple& t);

}  // namespace opendl
