// Manual check of opendl::cuda_plugin() without libopendl (not part of any build): prints what the loader reports
// on this machine. Build and run from the repository root:
//   g++ -std=c++17 -Icpp/src -Icpp/include cuda/checks/loader_check.cpp cpp/src/backend/cuda_loader.cpp -ldl -o /tmp/loader_check
//   OPENDL_CUDA_PLUGIN=build/cuda-check/libopendl_cuda.so /tmp/loader_check
#include <cstdio>

#include "backend/cuda_loader.h"
#include "opendl/error.h"

// Stand-in for libopendl's definition.
namespace opendl {
void fail(int code, const std::string& message) { throw Error(code, "", message); }
}  // namespace opendl

int main() {
  for (int k = 0; k < 2; ++k) {  // the second call must return the cached result
    std::string why;
    int code = 0;
    const opendl::CudaPlugin* p = opendl::cuda_plugin(&why, &code);
    if (p) {
      std::printf("plugin %s, %zu GPU(s)\n", p->path.c_str(), p->devices.size());
    } else {
      std::printf("unavailable, code %d: %s\n", code, why.c_str());
    }
  }
  for (const opendl::GpuInfo& g : opendl::cuda_devices()) {
    std::printf("GPU %d: %s, %.1f GiB, sm_%d%d\n", g.id, g.name.c_str(), double(g.total_memory) / (1 << 30), g.cc_major,
                g.cc_minor);
  }
  try {
    const opendl::CudaPlugin& p = opendl::require_cuda_plugin();
    char err[1024] = {0};
    for (const opendl::GpuInfo& g : p.devices) opendl::check_cuda_call(p.selftest(g.id, err, sizeof err), err);
    std::printf("selftest ok\n");
  } catch (const opendl::Error& e) {
    std::printf("opendl::Error %d: %s\n", e.code(), e.what());
  }
  return 0;
}
