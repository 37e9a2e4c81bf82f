// Small helpers for reading JS arguments and turning SysError into a thrown JS error.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "errors.h"
#include "names.h"

namespace layers {

// a path or name: its exact bytes (names.h)
inline std::string StrArg(const Napi::CallbackInfo& info, size_t i) { return NameFromJs(info[i]); }
inline int IntArg(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
inline int64_t I64Arg(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int64Value(); }

inline struct timespec TimespecOf(Napi::Value v) {
  Napi::Object o = v.As<Napi::Object>();
  struct timespec t;
  t.tv_sec = o.Get("sec").As<Napi::Number>().Int64Value();
  t.tv_nsec = o.Get("nsec").As<Napi::Number>().Int64Value();
  return t;
}

// Run f, turning a SysError into a thrown JS error.
template <typename F>
Napi::Value Guard(Napi::Env env, F f) {
  try {
    return f();
  } catch (const SysError& e) {
    throw ToJsError(env, e);
  }
}

}  // namespace layers
