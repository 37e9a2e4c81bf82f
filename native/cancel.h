// The process-wide cancel flag: `cancel()` from JS (the CLI's SIGINT/SIGTERM handler,
// docs/cli.md "Signals") sets it, and the long loops on worker threads (apply batch, tar
// segment writer, owner shift) check it between files, and the copy engine between the chunks
// of one body (copy.cc), failing with ECANCELED so that the
// operation unwinds through its normal failure path (the half-made layer removed, the locks
// released). It is never cleared: the process is about to exit. Cleanups (rm, unmount, the
// per-directory scan) do not check it, so they still run after it is set.
#pragma once
#include <napi.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "errors.h"

namespace layers {

inline std::atomic<bool> cancelRequested{false};

// Fails with ECANCELED naming `path` (the next file, which was not touched) once cancel() was called.
inline void CheckCancel(const std::string& path) {
  if (cancelRequested.load(std::memory_order_relaxed)) Fail(ECANCELED, "cancel", path);
}

inline void InitCancel(Napi::Env env, Napi::Object exports) {
  exports.Set("cancel", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    cancelRequested.store(true);
    return info.Env().Undefined();
  }, "cancel"));
}

}  // namespace layers
