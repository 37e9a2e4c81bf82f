#include "mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace layers {
namespace {

// A null source, fstype or data (JS null/undefined) is passed as NULL, as remounts and
// propagation changes want.
bool OptStr(const Napi::CallbackInfo& info, size_t i, std::string& out) {
  if (info.Length() <= i || !info[i].IsString()) return false;
  out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

Napi::Value MountJs(const Napi::CallbackInfo& info) {
  std::string source, target, fstype, data;
  bool hasSource = OptStr(info, 0, source), hasFs = OptStr(info, 2, fstype), hasData = OptStr(info, 4, data);
  target = info[1].As<Napi::String>().Utf8Value();
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  if (mount(hasSource ? source.c_str() : nullptr, target.c_str(), hasFs ? fstype.c_str() : nullptr, flags,
            hasData ? data.c_str() : nullptr) != 0) {
    SysError e;
    e.err = errno;
    e.syscall = "mount";
    e.path = target;
    throw ToJsError(info.Env(), e);
  }
  return info.Env().Undefined();
}

Napi::Value Umount2Js(const Napi::CallbackInfo& info) {
  std::string target = info[0].As<Napi::String>().Utf8Value();
  int flags = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (umount2(target.c_str(), flags) != 0) {
    SysError e;
    e.err = errno;
    e.syscall = "umount2";
    e.path = target;
    throw ToJsError(info.Env(), e);
  }
  return info.Env().Undefined();
}

}  // namespace

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, MountJs, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2Js, "umount2"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("MS_RDONLY", static_cast<double>(MS_RDONLY));
  c.Set("MS_NOSUID", static_cast<double>(MS_NOSUID));
  c.Set("MS_NODEV", static_cast<double>(MS_NODEV));
  c.Set("MS_REC", static_cast<double>(MS_REC));
  c.Set("MS_PRIVATE", static_cast<double>(MS_PRIVATE));
  c.Set("MNT_FORCE", static_cast<double>(MNT_FORCE));
  c.Set("MNT_DETACH", static_cast<double>(MNT_DETACH));
  c.Set("UMOUNT_NOFOLLOW", static_cast<double>(UMOUNT_NOFOLLOW));
  exports.Set("mountFlags", c);
}

}  // namespace layers
