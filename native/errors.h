// Errors that cross into JS looking like Node's own fs errors: code, errno, syscall, path, and
// for batch calls the index of the op that failed.
#pragma once
#include <napi.h>
#include <string>

namespace layers {

// Thrown inside native code (also on worker threads, where no JS exists) and turned into a
// JS error on the main thread.
struct SysError {
  int err = 0;              // positive errno
  std::string syscall;
  std::string path;
  long index = -1;
  std::string code;         // overrides the errno name (e.g. "ETARTRUNCATED")
  std::string message;      // overrides the errno text
};

[[noreturn]] void Fail(int err, const char* syscall, const std::string& path = "");
// An error of our own naming (the input ended early, a file shrank); err is the errno it is
// closest to, so `errno` stays a positive number as the contract promises.
[[noreturn]] void FailWith(const char* code, int err, const char* syscall, const std::string& path, const std::string& message);
// The message reads as Node's does: "ENOENT: no such file or directory, openat2 'a/b'".
Napi::Error ToJsError(Napi::Env env, const SysError& e);

}  // namespace layers
