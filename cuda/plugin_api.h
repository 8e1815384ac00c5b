// Export side of the plugin ABI. The declarations live in cpp/src/backend/cuda_plugin_abi.h, shared with the
// loader in libopendl; the plugin is compiled with hidden visibility, so only what is marked
// OPENDL_CUDA_EXPORT here leaves the .so (the statically linked CUDA runtime stays private).
#pragma once

#include "backend/cuda_plugin_abi.h"

#define OPENDL_CUDA_EXPORT extern "C" __attribute__((visibility("default")))
