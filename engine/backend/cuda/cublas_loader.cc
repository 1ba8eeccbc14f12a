// LoadCublas: dlopen and dlsym, once.
#include "engine/backend/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

namespace retain::engine::cuda {
namespace {

template <class F>
bool Resolve(void* lib, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (fn == nullptr) missing = name;
  return fn != nullptr;
}

absl::StatusOr<CublasApi> Open() {
  // The same major version as the headers: cuBLAS keeps its ABI within one.
  const std::string name = absl::StrCat("libcublas.so.", CUBLAS_VER_MAJOR);
  void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("--backend cuda needs ", name, ": ", why != nullptr ? why : "not found",
                                                      " (add the CUDA toolkit's lib64 to LD_LIBRARY_PATH)"));
  }
  CublasApi api{};
  std::string missing;
  // The _v2 names are what cublas_v2.h's macros call.
  if (!Resolve(lib, "cublasCreate_v2", api.create, missing) || !Resolve(lib, "cublasDestroy_v2", api.destroy, missing) ||
      !Resolve(lib, "cublasSetStream_v2", api.set_stream, missing) ||
      !Resolve(lib, "cublasSetMathMode", api.set_math_mode, missing) ||
      !Resolve(lib, "cublasSgemm_v2", api.sgemm, missing) ||
      !Resolve(lib, "cublasGetStatusString", api.status_string, missing)) {
    return absl::FailedPreconditionError(absl::StrCat(name, " has no ", missing));
  }
  return api;
}

}  // namespace

absl::StatusOr<const CublasApi*> LoadCublas() {
  static absl::StatusOr<CublasApi>* loaded = nullptr;
  static std::once_flag once;
  std::call_once(once, [] { loaded = new absl::StatusOr<CublasApi>(Open()); });  // never freed: dlopen'ed for good
  if (!loaded->ok()) return loaded->status();
  return &**loaded;
}

}  // namespace retain::engine::cuda
