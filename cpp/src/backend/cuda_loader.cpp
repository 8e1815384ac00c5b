// Loads libopendl_cuda with dlopen and classifies every way that can fail, so that callers get either a working
// plugin with at least one GPU or a HALCON error code and a sentence saying what to install. The library handle
// is never closed: the statically linked CUDA runtime inside the plugin registers process-exit handlers.
#include "backend/cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "opendl/error.h"

namespace opendl {
namespace {

constexpr const char* kPluginName = "libopendl_cuda.so";
constexpr size_t kErrLen = 1024;

struct LoadResult {
  CudaPlugin plugin;
  bool ok = false;
  int code = 0;
  std::string why;
};

// Any function of libopendl, for dladdr.
void anchor() {}

std::string libopendl_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&anchor), &info) == 0 || !info.dli_fname) return {};
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// Maps a dlopen failure of an existing plugin file to the library that is missing.
int classify_dlerror(const std::string& msg) {
  if (msg.find("libcudnn") != std::string::npos) return OPENDL_CUDA_ERR_CUDNN_LIBS_MISSING;
  if (msg.find("libcublas") != std::string::npos) return OPENDL_CUDA_ERR_CUBLAS_LIBS_MISSING;
  if (msg.find("libcuda.so") != std::string::npos || msg.find("libcudart") != std::string::npos)
    return OPENDL_CUDA_ERR_CUDA_LIBS_MISSING;
  return OPENDL_CUDA_ERR_NOT_AVAILABLE;
}

void fail_load(LoadResult& r, int code, std::string why) {
  r.ok = false;
  r.code = code;
  r.why = std::move(why);
}

void* open_plugin(LoadResult& r) {
  std::vector<std::string> candidates;
  const char* env = std::getenv("OPENDL_CUDA_PLUGIN");
  if (env && *env) {
    candidates.push_back(env);
  } else {
    std::string dir = libopendl_dir();
    if (!dir.empty()) candidates.push_back(dir + "/" + kPluginName);
    candidates.push_back(kPluginName);  // LD_LIBRARY_PATH, RUNPATH of libopendl, system directories
  }
  std::string tried;
  for (const std::string& c : candidates) {
    bool has_path = c.find('/') != std::string::npos;
    if (has_path && !file_exists(c)) {
      tried += (tried.empty() ? "" : ", ") + c;
      continue;
    }
    dlerror();
    void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
      r.plugin.path = c;
      return h;
    }
    const char* e = dlerror();
    std::string msg = e ? e : "unknown dlopen error";
    // A plain-name lookup that found nothing means the plugin is not installed; anything else is a plugin
    // that exists but cannot load (missing cuDNN/cuBLAS, wrong architecture, ...).
    if (!has_path && msg.find(kPluginName) != std::string::npos && msg.find("No such file") != std::string::npos) {
      tried += (tried.empty() ? "" : ", ") + c;
      continue;
    }
    int code = classify_dlerror(msg);
    std::string hint = code == OPENDL_CUDA_ERR_CUDNN_LIBS_MISSING    ? " (install cuDNN 9, e.g. `pip install nvidia-cudnn-cu13`)"
                       : code == OPENDL_CUDA_ERR_CUBLAS_LIBS_MISSING ? " (install cuBLAS, e.g. `pip install nvidia-cublas`)"
                       : code == OPENDL_CUDA_ERR_CUDA_LIBS_MISSING   ? " (install the NVIDIA driver)"
                                                                     : "";
    fail_load(r, code, "cannot load the CUDA plugin " + c + ": " + msg + hint);
    return nullptr;
  }
  if (env && *env)
    fail_load(r, OPENDL_CUDA_ERR_NOT_AVAILABLE, std::string("OPENDL_CUDA_PLUGIN names a missing file: ") + env);
  else
    fail_load(r, OPENDL_CUDA_ERR_NOT_AVAILABLE,
              "opendl was built without the CUDA plugin (" + std::string(kPluginName) + " not found; looked for " +
                  tried + ")");
  return nullptr;
}

template <class Fn>
bool resolve(void* h, const char* name, Fn* out, LoadResult& r) {
  dlerror();
  *out = reinterpret_cast<Fn>(dlsym(h, name));
  if (*out) return true;
  fail_load(r, OPENDL_CUDA_ERR_NOT_AVAILABLE,
            "the CUDA plugin " + r.plugin.path + " lacks the symbol " + name + " (plugin from another opendl version)");
  return false;
}

LoadResult load() {
  LoadResult r;
  const char* off = std::getenv("OPENDL_DISABLE_CUDA");
  if (off && *off && std::strcmp(off, "0") != 0) {
    fail_load(r, OPENDL_CUDA_ERR_NOT_AVAILABLE, "CUDA disabled by OPENDL_DISABLE_CUDA");
    return r;
  }
  void* h = open_plugin(r);
  if (!h) return r;
  CudaPlugin& p = r.plugin;
  if (!resolve(h, "opendl_cuda_abi_version", &p.abi_version, r)) return r;
  if (p.abi_version() != OPENDL_CUDA_ABI_VERSION) {
    fail_load(r, OPENDL_CUDA_ERR_NOT_AVAILABLE,
              "the CUDA plugin " + p.path + " has ABI version " + std::to_string(p.abi_version()) + ", expected " +
                  std::to_string(OPENDL_CUDA_ABI_VERSION) + " (plugin from another opendl version)");
    return r;
  }
  if (!resolve(h, "opendl_cuda_device_count", &p.device_count, r) ||
      !resolve(h, "opendl_cuda_device_info", &p.device_info, r) ||
      !resolve(h, "opendl_cuda_versions", &p.versions, r) || !resolve(h, "opendl_cuda_selftest", &p.selftest, r) ||
      !resolve(h, "opendl_cuda_backend_create", &p.backend_create, r) ||
      !resolve(h, "opendl_cuda_backend_destroy", &p.backend_destroy, r) ||
      !resolve(h, "opendl_cuda_backend_take_error", &p.backend_take_error, r) ||
      !resolve(h, "opendl_cuda_backend_set_options", &p.backend_set_options, r) ||
      !resolve(h, "opendl_cuda_backend_synchronize", &p.backend_synchronize, r))
    return r;

  char err[kErrLen] = {0};
  int rc = p.versions(&p.library_versions, err, sizeof err);
  if (rc != 0) {
    fail_load(r, rc, err);
    return r;
  }
  int count = 0;
  rc = p.device_count(&count, err, sizeof err);
  if (rc != 0) {
    fail_load(r, rc, err);
    return r;
  }
  for (int i = 0; i < count; ++i) {
    OpendlCudaDeviceInfo di{};
    rc = p.device_info(i, &di, err, sizeof err);
    if (rc != 0) {
      fail_load(r, rc, err);
      return r;
    }
    GpuInfo g;
    g.id = i;
    g.name.assign(di.name, strnlen(di.name, sizeof di.name));
    g.total_memory = di.total_memory;
    g.cc_major = di.cc_major;
    g.cc_minor = di.cc_minor;
    g.multiprocessor_count = di.multiprocessor_count;
    g.pci_bus_id = di.pci_bus_id;
    p.devices.push_back(std::move(g));
  }
  r.ok = true;
  return r;
}

}  // namespace

const CudaPlugin* cuda_plugin(std::string* why, int* code) {
  static std::once_flag once;
  static LoadResult* result = nullptr;  // leaked on purpose: valid during static destruction too
  std::call_once(once, [] {
    try {
      result = new LoadResult(load());
    } catch (const std::exception& e) {  // bad_alloc and friends: report, do not propagate from a query
      static LoadResult failed;
      failed.code = OPENDL_CUDA_ERR_NOT_AVAILABLE;
      failed.why = std::string("loading the CUDA plugin failed: ") + e.what();
      result = &failed;
    }
  });
  if (result->ok) return &result->plugin;
  if (why) *why = result->why;
  if (code) *code = result->code;
  return nullptr;
}

std::vector<GpuInfo> cuda_devices() {
  const CudaPlugin* p = cuda_plugin();
  return p ? p->devices : std::vector<GpuInfo>{};
}

const CudaPlugin& require_cuda_plugin() {
  std::string why;
  int code = 0;
  const CudaPlugin* p = cuda_plugin(&why, &code);
  if (!p) fail(code ? code : OPENDL_CUDA_ERR_NOT_AVAILABLE, why);
  return *p;
}

void check_cuda_call(int code, const char* err) {
  if (code != 0) fail(code, err && *err ? err : "CUDA plugin call failed");
}

}  // namespace opendl
