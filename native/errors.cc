#include "errors.h"
#include "names.h"

#include <uv.h>

namespace layers {

void Fail(int err, const char* syscall, const std::string& path) {
  SysError e;
  e.err = err;
  e.syscall = syscall;
  e.path = path;
  throw e;
}

void FailWith(const char* code, int err, const char* syscall, const std::string& path, const std::string& message) {
  SysError e;
  e.code = code;
  e.err = err;
  e.syscall = syscall;
  e.path = path;
  e.message = message;
  throw e;
}

Napi::Error ToJsError(Napi::Env env, const SysError& e) {
  // libuv's names and texts are the ones Node's fs errors use
  std::string code = !e.code.empty() ? e.code : (e.err ? uv_err_name(-e.err) : "EUNKNOWN");
  std::string text = !e.message.empty() ? e.message : (e.err ? uv_strerror(-e.err) : "unknown error");
  std::string msg = code + ": " + text + ", " + e.syscall;
  if (!e.path.empty()) msg += " '" + e.path + "'";
  Napi::Error err = Napi::Error::New(env, msg);
  Napi::Object o = err.Value();
  o.Set("code", code);
  o.Set("errno", e.err);
  o.Set("syscall", e.syscall);
  if (!e.path.empty()) o.Set("path", NameToJs(env, e.path));
  if (e.index >= 0) o.Set("index", Napi::Number::New(env, static_cast<double>(e.index)));
  return err;
}

}  // namespace layers
