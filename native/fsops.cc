#include "fsops.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "copy.h"
#include "errors.h"
#include "resolve.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif
#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

namespace layers {
namespace {

std::string Str(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::String>().Utf8Value(); }
int Int(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
int64_t I64(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int64Value(); }

// Run f, turning a SysError into a thrown JS error.
template <typename F>
Napi::Value Guard(Napi::Env env, F f) {
  try {
    return f();
  } catch (const SysError& e) {
    throw ToJsError(env, e);
  }
}

Napi::Value CopyRangeJs(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    int in = Int(info, 0), out = Int(info, 2);
    Method m = info.Length() > 5 && info[5].IsString() ? ParseMethod(Str(info, 5).c_str()) : kAuto;
    CopyTarget t = ProbeTarget(out);
    std::vector<char> buf;
    CopyStats s;
    uint64_t n = CopyRange(in, I64(info, 1), out, I64(info, 3), static_cast<uint64_t>(I64(info, 4)), m, t, buf, s);
    int used = kReadWrite;
    for (int i = 0; i < kMethods; i++)
      if (s.bytes[i]) used = i;
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(n)));
    r.Set("method", kMethodNames[used]);
    return r;
  });
}

Napi::Value Ficlone(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (ioctl(Int(info, 1), FICLONE, Int(info, 0)) != 0) Fail(errno, "ioctl(FICLONE)");
    return info.Env().Undefined();
  });
}

Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = Str(info, 0), n = Str(info, 1);
    for (;;) {
      ssize_t len = lgetxattr(p.c_str(), n.c_str(), nullptr, 0);
      if (len < 0) {
        if (errno == ENODATA) return info.Env().Undefined();
        Fail(errno, "lgetxattr", p);
      }
      auto b = Napi::Buffer<char>::New(info.Env(), static_cast<size_t>(len));
      ssize_t got = lgetxattr(p.c_str(), n.c_str(), b.Data(), static_cast<size_t>(len));
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
    std::string p = Str(info, 0), n = Str(info, 1);
    auto v = info[2].As<Napi::Buffer<char>>();
    int flags = info.Length() > 3 && info[3].IsNumber() ? Int(info, 3) : 0;
    if (lsetxattr(p.c_str(), n.c_str(), v.Data(), v.Length(), flags) != 0) Fail(errno, "lsetxattr", p);
    return info.Env().Undefined();
  });
}

Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = Str(info, 0);
    std::vector<char> buf;
    for (;;) {
      ssize_t len = llistxattr(p.c_str(), nullptr, 0);
      if (len < 0) {
        if (errno == ENOTSUP) len = 0;
        else Fail(errno, "llistxattr", p);
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
    std::string p = Str(info, 0), n = Str(info, 1);
    if (lremovexattr(p.c_str(), n.c_str()) != 0) Fail(errno, "lremovexattr", p);
    return info.Env().Undefined();
  });
}

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = Str(info, 0);
    if (mknod(p.c_str(), static_cast<mode_t>(Int(info, 1)), makedev(static_cast<unsigned>(Int(info, 2)), static_cast<unsigned>(Int(info, 3)))) != 0)
      Fail(errno, "mknod", p);
    return info.Env().Undefined();
  });
}

Napi::Value Lchown(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = Str(info, 0);
    if (lchown(p.c_str(), static_cast<uid_t>(I64(info, 1)), static_cast<gid_t>(I64(info, 2))) != 0) Fail(errno, "lchown", p);
    return info.Env().Undefined();
  });
}

struct timespec Ts(Napi::Value v) {
  Napi::Object o = v.As<Napi::Object>();
  struct timespec t;
  t.tv_sec = o.Get("sec").As<Napi::Number>().Int64Value();
  t.tv_nsec = o.Get("nsec").As<Napi::Number>().Int64Value();
  return t;
}

Napi::Value Lutimes(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = Str(info, 0);
    struct timespec ts[2] = {Ts(info[1]), Ts(info[2])};
    if (utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "utimensat", p);
    return info.Env().Undefined();
  });
}

Napi::Value Openat2Js(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = Str(info, 1);
    int fd = Openat2(Int(info, 0), p.c_str(), Int(info, 2) | O_CLOEXEC, Int(info, 3), static_cast<unsigned long long>(I64(info, 4)));
    if (fd < 0) Fail(errno, "openat2", p);
    return Napi::Number::New(info.Env(), fd);
  });
}

Napi::Value Fstatfs(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    struct statfs s;
    if (fstatfs(Int(info, 0), &s) != 0) Fail(errno, "fstatfs");
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("type", Napi::Number::New(info.Env(), static_cast<double>(static_cast<unsigned long>(s.f_type) & 0xffffffffUL)));
    r.Set("bsize", Napi::Number::New(info.Env(), static_cast<double>(s.f_bsize)));
    r.Set("blocks", Napi::Number::New(info.Env(), static_cast<double>(s.f_blocks)));
    r.Set("bfree", Napi::Number::New(info.Env(), static_cast<double>(s.f_bfree)));
    r.Set("bavail", Napi::Number::New(info.Env(), static_cast<double>(s.f_bavail)));
    return r;
  });
}

}  // namespace

void InitFsOps(Napi::Env env, Napi::Object exports) {
  exports.Set("copyRange", Napi::Function::New(env, CopyRangeJs, "copyRange"));
  exports.Set("ficlone", Napi::Function::New(env, Ficlone, "ficlone"));
  exports.Set("lgetxattr", Napi::Function::New(env, Lgetxattr, "lgetxattr"));
  exports.Set("lsetxattr", Napi::Function::New(env, Lsetxattr, "lsetxattr"));
  exports.Set("llistxattr", Napi::Function::New(env, Llistxattr, "llistxattr"));
  exports.Set("lremovexattr", Napi::Function::New(env, Lremovexattr, "lremovexattr"));
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("lchown", Napi::Function::New(env, Lchown, "lchown"));
  exports.Set("lutimes", Napi::Function::New(env, Lutimes, "lutimes"));
  exports.Set("openat2", Napi::Function::New(env, Openat2Js, "openat2"));
  exports.Set("fstatfs", Napi::Function::New(env, Fstatfs, "fstatfs"));
  Napi::Object c = Napi::Object::New(env);
  c.Set("RESOLVE_NO_XDEV", RESOLVE_NO_XDEV);
  c.Set("RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS);
  c.Set("RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS);
  c.Set("RESOLVE_BENEATH", RESOLVE_BENEATH);
  c.Set("RESOLVE_IN_ROOT", RESOLVE_IN_ROOT);
  c.Set("O_PATH", O_PATH);
  c.Set("AT_FDCWD", AT_FDCWD);
  c.Set("BTRFS_SUPER_MAGIC", static_cast<double>(BTRFS_SUPER_MAGIC));
  c.Set("XFS_SUPER_MAGIC", static_cast<double>(XFS_SUPER_MAGIC));
  c.Set("EXT4_SUPER_MAGIC", static_cast<double>(EXT4_SUPER_MAGIC));
  c.Set("TMPFS_MAGIC", static_cast<double>(TMPFS_MAGIC));
  c.Set("OVERLAYFS_SUPER_MAGIC", static_cast<double>(OVERLAYFS_SUPER_MAGIC));
  exports.Set("constants", c);
}

}  // namespace layers
