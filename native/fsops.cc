#include "fsops.h"
#include "copy.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "js.h"
#include "resolve.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif
#ifndef OVERLAYFS_SUPER_MAGIC
#define OVERLAYFS_SUPER_MAGIC 0x794c7630
#endif

namespace layers {
namespace {

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    dev_t dev = makedev(static_cast<unsigned>(IntArg(info, 2)), static_cast<unsigned>(IntArg(info, 3)));
    if (mknod(p.c_str(), static_cast<mode_t>(IntArg(info, 1)), dev) != 0) Fail(errno, "mknod", p);
    return info.Env().Undefined();
  });
}

Napi::Value Lchown(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    if (lchown(p.c_str(), static_cast<uid_t>(I64Arg(info, 1)), static_cast<gid_t>(I64Arg(info, 2))) != 0) Fail(errno, "lchown", p);
    return info.Env().Undefined();
  });
}

Napi::Value Lutimes(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    struct timespec ts[2] = {TimespecOf(info[1]), TimespecOf(info[2])};
    if (utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "utimensat", p);
    return info.Env().Undefined();
  });
}

Napi::Value Openat2Js(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 1);
    // always close-on-exec: a spawned tar or mkfs must not inherit layer files
    int fd = Openat2(IntArg(info, 0), p.c_str(), IntArg(info, 2) | O_CLOEXEC, IntArg(info, 3), static_cast<unsigned long long>(I64Arg(info, 4)));
    if (fd < 0) Fail(errno, "openat2", p);
    return Napi::Number::New(info.Env(), fd);
  });
}

// The data ranges of a file (SEEK_DATA/SEEK_HOLE), flattened [offset, length, ...]: where a
// sparse tar entry takes its bytes from. A filesystem without hole reporting answers with one
// range (the whole file), which is right, only not sparse.
Napi::Value DataRanges(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 1);
    int fd = Openat2(IntArg(info, 0), p.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    if (fd < 0) Fail(errno, "openat2", p);
    Napi::Array out = Napi::Array::New(info.Env());
    uint32_t n = 0;
    try {
      off_t end = lseek(fd, 0, SEEK_END);
      if (end < 0) Fail(errno, "lseek", p);
      uint64_t at = 0, data = 0, stop = 0;
      while (NextData(fd, at, static_cast<uint64_t>(end), data, stop, p)) {
        out.Set(n++, Napi::Number::New(info.Env(), static_cast<double>(data)));
        out.Set(n++, Napi::Number::New(info.Env(), static_cast<double>(stop - data)));
        at = stop;
      }
    } catch (...) {
      close(fd);
      throw;
    }
    close(fd);
    return out;
  });
}

Napi::Value Fstatfs(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    struct statfs s;
    if (fstatfs(IntArg(info, 0), &s) != 0) Fail(errno, "fstatfs");
    Napi::Env env = info.Env();
    Napi::Object r = Napi::Object::New(env);
    // f_type is a signed long; the magics are 32-bit unsigned values (btrfs' has the top bit set)
    r.Set("type", Napi::Number::New(env, static_cast<double>(static_cast<unsigned long>(s.f_type) & 0xffffffffUL)));
    r.Set("bsize", Napi::Number::New(env, static_cast<double>(s.f_bsize)));
    r.Set("blocks", Napi::Number::New(env, static_cast<double>(s.f_blocks)));
    r.Set("bfree", Napi::Number::New(env, static_cast<double>(s.f_bfree)));
    r.Set("bavail", Napi::Number::New(env, static_cast<double>(s.f_bavail)));
    return r;
  });
}

// flock(LOCK_EX | LOCK_NB): true when taken, false when another open file holds it. The
// kernel drops the lock when its holder's last fd on it closes, however the process ends.
Napi::Value TryLockExclusive(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    while (flock(IntArg(info, 0), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
      Fail(errno, "flock");
    }
    return Napi::Boolean::New(info.Env(), true);
  });
}

}  // namespace

void InitFsOps(Napi::Env env, Napi::Object exports) {
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("lchown", Napi::Function::New(env, Lchown, "lchown"));
  exports.Set("lutimes", Napi::Function::New(env, Lutimes, "lutimes"));
  exports.Set("openat2", Napi::Function::New(env, Openat2Js, "openat2"));
  exports.Set("fstatfs", Napi::Function::New(env, Fstatfs, "fstatfs"));
  exports.Set("dataRanges", Napi::Function::New(env, DataRanges, "dataRanges"));
  exports.Set("tryLockExclusive", Napi::Function::New(env, TryLockExclusive, "tryLockExclusive"));
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
