// Process-wide settings of set_system: the seed for new models ('seed_rand') and the CPU thread count.
#pragma once

#include <cstdint>

namespace opendl {
uint64_t global_seed();
}  // namespace opendl
