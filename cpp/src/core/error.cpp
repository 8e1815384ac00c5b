// Error helpers and the textual form of tuples used in error messages.
#include "opendl/error.h"

#include <sstream>

#include "opendl/tuple.h"

namespace opendl {

void fail(int code, const std::string& message) { throw Error(code, "", message); }

std::string to_string(const Value& v) {
  if (is_int(v)) return std::to_string(std::get<int64_t>(v));
  if (is_real(v)) {
    std::ostringstream os;
    os << std::get<double>(v);
    return os.str();
  }
  return "'" + std::get<std::string>(v) + "'";
}

std::string to_string(const Tuple& t) {
  if (t.size() == 1) return to_string(t[0]);
  std::string s = "[";
  for (size_t i = 0; i < t.size(); ++i) s += (i ? ", " : "") + to_string(t[i]);
  return s + "]";
}

}  // namespace opendl
