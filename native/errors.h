// Errors that cross into JS looking like Node's own fs errors: code, errno, syscall, path, and
// for batch calls the index of the op that failed.
#pragma once
#include <napi.h>
#include <string>

namespace layers {

// Thrown inside native code (also on worker threads, where no JS exists) and turned into a
// JS error on the main thread.
struct SysError {
  int err = 0;              // positive errno, or 0 when `code` says what happened
  std::string syscall;
  std::string path;
  long index = -1;
  std::string code;         // overrides the errno name (e.g. "ETARTRUNCATED")
  std::string message;      // overrides the strerror text
};

[[noreturn]] void Fail(int err, const char* syscall, const std::string& path = "");
Napi::Error ToJsError(Napi::Env env, const SysError& e);

}  // namespace layers
