// Padding resolution and output-size rule shared by the sliding-window layers.
#include "layers/geometry.h"

#include <algorithm>

namespace opendl {

ParamSpec padding_spec() {
  ParamSpec s;
  s.name = "padding";
  s.kind = ParamSpec::Kind::kIntOrString;
  s.min_len = 1;
  s.max_len = 4;
  s.lo = 0;
  s.hi = kMaxGeometry;
  s.positional = true;
  return s;
}

int64_t window_out(const Layer& l, int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1,
                   const char* axis) {
  int64_t keff = (k - 1) * d + 1;
  int64_t span = in + p0 + p1 - keff;
  if (span < 0)
    fail(err::kInvalidShape, "layer '" + l.name() + "': the " + axis + " of the input (" + std::to_string(in) +
                                 ", padding " + std::to_string(p0 + p1) + ") is smaller than the kernel (" +
                                 std::to_string(keff) + ")");
  return span / s + 1;
}

void resolve_padding(const Layer& l, Window& win, int64_t ih, int64_t iw) {
  const Tuple& p = l.param("padding");
  auto khe = (win.kh - 1) * win.dh + 1, kwe = (win.kw - 1) * win.dw + 1;
  if (is_string(p[0])) {
    const std::string& m = std::get<std::string>(p[0]);
    if (p.size() != 1)
      fail(err::kWrongValue3, "layer '" + l.name() + "': padding '" + m + "' takes no further values");
    if (m == "none") {
      win.pt = win.pb = win.pl = win.pr = 0;
    } else if (m == "half_kernel_size") {
      win.pt = win.pb = khe / 2;
      win.pl = win.pr = kwe / 2;
    } else if (m == "implicit") {
      // No padding at the top/left; at the bottom/right as many pixels as the last window needs, so every
      // input pixel is covered (HALCON's 'implicit'; none when the kernel fits exactly).
      auto extra = [](int64_t in, int64_t k, int64_t s) {
        int64_t out = in >= k ? (in - k + s - 1) / s + 1 : 1;
        return std::max<int64_t>(0, (out - 1) * s + k - in);
      };
      win.pt = win.pl = 0;
      win.pb = extra(ih, khe, win.sh);
      win.pr = extra(iw, kwe, win.sw);
    } else {
      fail(err::kWrongValue3, "layer '" + l.name() + "': invalid padding '" + m +
                                  "' (allowed: 'none', 'half_kernel_size', 'implicit' or 1, 2 or 4 numbers)");
    }
    return;
  }
  std::vector<int64_t> v;
  for (auto& e : p) {
    if (!is_int(e)) fail(err::kWrongValue3, "layer '" + l.name() + "': padding mixes numbers and strings");
    v.push_back(std::get<int64_t>(e));
  }
  if (v.size() == 1) win.pl = win.pr = win.pt = win.pb = v[0];
  else if (v.size() == 2) { win.pl = win.pr = v[0]; win.pt = win.pb = v[1]; }
  else if (v.size() == 4) { win.pl = v[0]; win.pr = v[1]; win.pt = v[2]; win.pb = v[3]; }
  else fail(err::kWrongNumValues3, "layer '" + l.name() + "': padding takes 1, 2 or 4 numbers, got " +
                                     std::to_string(v.size()));
}

}  // namespace opendl
