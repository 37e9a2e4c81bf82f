// Extended attributes by path, never following a final symlink. Values are raw bytes (a
// security.capability value has bytes >= 0x80), so they cross as Buffers, never strings.
#include <sys/xattr.h>

#include <cerrno>
#include <string>
#include <vector>

#include "fsops.h"
#include "js.h"

namespace layers {
namespace {

Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0), n = StrArg(info, 1);
    for (;;) {
      ssize_t len = lgetxattr(p.c_str(), n.c_str(), nullptr, 0);
      if (len < 0) {
        if (errno == ENODATA) return info.Env().Undefined();
        Fail(errno, "lgetxattr", p);
      }
      auto b = Napi::Buffer<char>::New(info.Env(), static_cast<size_t>(len));
      ssize_t got = len ? lgetxattr(p.c_str(), n.c_str(), b.Data(), static_cast<size_t>(len)) : 0;
      if (got < 0) {
        if (errno == ERANGE) continue;  // grew meanwhile
        if (errno == ENODATA) return info.Env().Undefined();
        Fail(errno, "lgetxattr", p);
      }
      return got == len ? b : Napi::Buffer<char>::Copy(info.Env(), b.Data(), static_cast<size_t>(got));
    }
  });
}

Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0), n = StrArg(info, 1);
    auto v = info[2].As<Napi::Buffer<char>>();
    int flags = info.Length() > 3 && info[3].IsNumber() ? IntArg(info, 3) : 0;
    if (lsetxattr(p.c_str(), n.c_str(), v.Data(), v.Length(), flags) != 0) Fail(errno, "lsetxattr", p);
    return info.Env().Undefined();
  });
}

Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    std::vector<char> buf;
    for (;;) {
      ssize_t len = llistxattr(p.c_str(), nullptr, 0);
      if (len < 0) {
        if (errno != ENOTSUP) Fail(errno, "llistxattr", p);
        len = 0;  // a filesystem without xattrs has none
      }
      buf.resize(static_cast<size_t>(len));
      if (len == 0) break;
      ssize_t got = llistxattr(p.c_str(), buf.data(), buf.size());
      if (got < 0) {
        if (errno == ERANGE) continue;
        Fail(errno, "llistxattr", p);
      }
      buf.resize(static_cast<size_t>(got));
      break;
    }
    Napi::Array a = Napi::Array::New(info.Env());
    uint32_t k = 0;
    for (size_t i = 0; i < buf.size();) {
      std::string name(buf.data() + i);
      i += name.size() + 1;
      if (!name.empty()) a.Set(k++, name);
    }
    return a;
  });
}

Napi::Value Lremovexattr(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0), n = StrArg(info, 1);
    if (lremovexattr(p.c_str(), n.c_str()) != 0) Fail(errno, "lremovexattr", p);
    return info.Env().Undefined();
  });
}

}  // namespace

void InitXattr(Napi::Env env, Napi::Object exports) {
  exports.Set("lgetxattr", Napi::Function::New(env, Lgetxattr, "lgetxattr"));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr, "lsetxattr"));
  exports.Set("llistxattr", Napi::Function::New(env, Llistxattr, "llistxattr"));
  exports.Set("lremovexattr", Napi::Function::New(env, Lremovexattr, "lremovexattr"));
}

}  // namespace layers
