// Shape4: the logical shape of an activation, (N, C, H, W). HALCON speaks of (width, height, depth, batch);
// conversions between the two orders happen only where parameters enter or leave the library.
#pragma once

#include <cstdint>
#include <string>

namespace opendl {

struct Shape4 {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t numel() const { return n * c * h * w; }
  int64_t per_sample() const { return c * h * w; }
  int64_t spatial() const { return h * w; }
  bool operator==(const Shape4& o) const { return n == o.n && c == o.c && h == o.h && w == o.w; }
  bool operator!=(const Shape4& o) const { return !(*this == o); }
  std::string str() const {  // HALCON order, as users see it
    return "[width " + std::to_string(w) + ", height " + std::to_string(h) + ", depth " + std::to_string(c) +
           ", batch " + std::to_string(n) + "]";
  }
};

}  // namespace opendl
