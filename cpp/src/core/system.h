// Process-wide settings of set_system: the seed for new models ('seed_rand') and the CPU thread count; and the
// per-thread deterministic mode.
#pragma once

#include <cstdint>

namespace opendl {
uint64_t global_seed();
// Deterministic mode of the calling thread: the CPU backend runs the primitives whose floating-point
// reduction order depends on the thread count (convolutions, whose jit kernels split reductions by thread,
// weight gradients, batch-normalisation statistics, inner products) single-threaded, so training gives
// bit-identical results whatever 'thread_num' is.
void set_thread_deterministic(bool on);
bool thread_deterministic();
}  // namespace opendl
