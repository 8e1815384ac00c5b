// Shared geometry of sliding-window layers (convolution, pooling, transposed convolution): HALCON's
// [width, height] parameter order and padding modes 'none', 'half_kernel_size', 'implicit' or numbers
// (1 value: all sides; 2 values: [left/right, top/bottom]; 4 values: [left, right, top, bottom]).
#pragma once

#include <cstdint>
#include <string>

#include "graph/layer.h"

namespace opendl {

struct Window {
  int64_t kh, kw, sh, sw, dh = 1, dw = 1;
  int64_t pt = 0, pb = 0, pl = 0, pr = 0;
};

// Reads 1 or 2 values ([width, height]) of parameter k into (h, w).
inline void wh_param(const Layer& l, const std::string& k, int64_t& h, int64_t& w) {
  w = l.int_param(k, 0);
  h = l.int_param(k, 1);  // int_param clamps the index: one value serves both
}

// Resolves the padding parameter for an input of size (ih, iw); throws naming the layer on bad values.
void resolve_padding(const Layer& l, Window& win, int64_t ih, int64_t iw);
// Output size along one axis: floor((in + p0 + p1 - effective_kernel) / stride) + 1; >= 1 or throws.
int64_t window_out(const Layer& l, int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1,
                   const char* axis);
ParamSpec padding_spec();

}  // namespace opendl
