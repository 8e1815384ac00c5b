// The GPU backends: libopendl's side of the CUDA plugin's backend (cuda/cuda_backend.cpp). Each CUDA device gets
// one backend, created on first use from the loaded plugin and kept until the process exits (its CUDA objects are
// never torn down during static destruction). Calls are serialised per device (the plugin's scratch buffers and
// stream are shared by all models on it), and every plugin failure becomes an opendl::Error with the plugin's
// HALCON code; the backend stays usable afterwards.
#pragma once

#include "backend/backend.h"

namespace opendl {

// The backend of CUDA device `device`, or an Error: 4204 / 7708 / 7709 / 7717 / 7718 when CUDA is unusable (see
// cuda_loader.h), 1302 for a device id out of range.
Backend& gpu_backend(int device);

// Process-wide GPU settings (set_system): TF32 tensor cores for convolutions and matrix products (default on),
// and 'cudnn_deterministic' (only deterministic cuDNN algorithms; a thread's deterministic mode implies it).
void set_gpu_tf32(bool on);
bool gpu_tf32();
void set_cudnn_deterministic(bool on);
bool cudnn_deterministic();
// opendl's 'gpu_graphs' (default on): training steps on a GPU are recorded once as a CUDA graph and replayed
// (Model::run_recorded); off runs every call directly.
void set_gpu_graphs(bool on);
bool gpu_graphs();

}  // namespace opendl
