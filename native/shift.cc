#include "shift.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cancel.h"
#include "errors.h"
#include "names.h"

namespace layers {
namespace {

#ifndef SYS_getxattrat
#define SYS_getxattrat 464  // Linux 6.13, the same number on every architecture
#endif

struct Range {
  uint32_t container, host, size;
};
using Map = std::vector<Range>;

constexpr uint32_t kOverflowId = 65534;  // what the kernel shows for an id with no place
constexpr const char* kCapability = "security.capability";

// host id under `from` -> container id -> host id under `to`; an empty map is the identity
bool Shift(const Map& from, const Map& to, uint32_t id, uint32_t& out) {
  uint32_t c = id;
  if (!from.empty()) {
    bool found = false;
    for (const Range& r : from)
      if (id >= r.host && id - r.host < r.size) {
        c = r.container + (id - r.host);
        found = true;
        break;
      }
    if (!found) return false;
  }
  if (to.empty()) {
    out = c;
    return true;
  }
  for (const Range& r : to)
    if (c >= r.container && c - r.container < r.size) {
      out = r.host + (c - r.container);
      return true;
    }
  return false;
}

class Shifter {
 public:
  Shifter(Map fu, Map fg, Map tu, Map tg) : fromU_(std::move(fu)), fromG_(std::move(fg)), toU_(std::move(tu)), toG_(std::move(tg)) {}
  uint64_t overflowed = 0;

  void Run(const std::string& root) {
    int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) Fail(errno, "open", root);
    struct stat st;
    if (fstat(fd, &st) < 0) {
      int e = errno;
      close(fd);
      Fail(e, "fstat", root);
    }
    try {
      // the root itself, by its fd (it has no parent beneath the tree)
      uint32_t u, g;
      Ids(st, u, g);
      if (u != st.st_uid || g != st.st_gid) {
        if (fchown(fd, u, g) < 0) Fail(errno, "fchown", root);
        if (st.st_mode & 06000) Restore(fchmod(fd, st.st_mode & 07777), "fchmod", root);
      }
      Walk(fd, root);
    } catch (...) {
      close(fd);
      throw;
    }
    close(fd);
  }

 private:
  Map fromU_, fromG_, toU_, toG_;
  std::set<std::pair<dev_t, ino_t>> seen_;  // an inode with several names is shifted once
  bool haveGetxattrat_ = true;

  void Ids(const struct stat& st, uint32_t& u, uint32_t& g) {
    if (!Shift(fromU_, toU_, st.st_uid, u)) {
      u = kOverflowId;
      overflowed++;
    }
    if (!Shift(fromG_, toG_, st.st_gid, g)) {
      g = kOverflowId;
      overflowed++;
    }
  }

  static void Restore(int rc, const char* syscall, const std::string& path) {
    if (rc < 0) Fail(errno, syscall, path);
  }

  // security.capability of dir/name (a regular file), or empty; getxattrat(2) names it by
  // dirfd + name, older kernels go through the /proc path (which l* calls do not follow)
  std::vector<char> Capability(int dir, const char* name, const std::string& path) {
    std::vector<char> v(256);
    ssize_t n = -1;
    if (haveGetxattrat_) {
      struct {
        uint64_t value;
        uint32_t size;
        uint32_t flags;
      } args = {reinterpret_cast<uintptr_t>(v.data()), static_cast<uint32_t>(v.size()), 0};
      n = syscall(SYS_getxattrat, dir, name, AT_SYMLINK_NOFOLLOW, kCapability, &args, sizeof(args));
      if (n < 0 && errno == ENOSYS) haveGetxattrat_ = false;
    }
    if (!haveGetxattrat_) {
      std::string p = "/proc/self/fd/" + std::to_string(dir) + "/" + name;
      n = lgetxattr(p.c_str(), kCapability, v.data(), v.size());
    }
    if (n < 0) {
      if (errno == ENODATA || errno == ENOTSUP) return {};
      Fail(errno, "getxattr", path);
    }
    v.resize(static_cast<size_t>(n));
    return v;
  }

  void SetCapability(int dir, const char* name, const std::vector<char>& cap, const std::string& path) {
    std::string p = "/proc/self/fd/" + std::to_string(dir) + "/" + name;
    if (lsetxattr(p.c_str(), kCapability, cap.data(), cap.size(), 0) < 0) Fail(errno, "setxattr", path);
  }

  void Walk(int dirFd, const std::string& dirPath) {
    int scanFd = dup(dirFd);
    if (scanFd < 0) Fail(errno, "dup", dirPath);
    DIR* d = fdopendir(scanFd);
    if (!d) {
      int e = errno;
      close(scanFd);
      Fail(e, "fdopendir", dirPath);
    }
    try {
      for (;;) {
        errno = 0;
        struct dirent* e = readdir(d);
        if (!e) {
          if (errno) Fail(errno, "readdir", dirPath);
          break;
        }
        const char* name = e->d_name;
        if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
        Entry(dirFd, name, dirPath + "/" + name);
      }
    } catch (...) {
      closedir(d);
      throw;
    }
    closedir(d);
  }

  void Entry(int dir, const char* name, const std::string& path) {
    CheckCancel(path);
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) Fail(errno, "fstatat", path);
    bool isDir = S_ISDIR(st.st_mode);
    bool once = isDir || st.st_nlink < 2 || seen_.insert({st.st_dev, st.st_ino}).second;
    if (once) {
      uint32_t u, g;
      Ids(st, u, g);
      if (u != st.st_uid || g != st.st_gid) {
        // chown clears setuid/setgid bits and file capabilities: both are put back
        std::vector<char> cap = S_ISREG(st.st_mode) ? Capability(dir, name, path) : std::vector<char>();
        if (fchownat(dir, name, u, g, AT_SYMLINK_NOFOLLOW) < 0) Fail(errno, "fchownat", path);
        if (!S_ISLNK(st.st_mode) && (st.st_mode & 06000)) Restore(fchmodat(dir, name, st.st_mode & 07777, 0), "fchmodat", path);
        if (!cap.empty()) SetCapability(dir, name, cap, path);
      }
    }
    if (!isDir) return;
    int sub = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) Fail(errno, "openat", path);
    try {
      Walk(sub, path);
    } catch (...) {
      close(sub);
      throw;
    }
    close(sub);
  }
};

Map MapArg(Napi::Value v) {
  Map m;
  if (!v.IsArray()) return m;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Object r = a.Get(i).As<Napi::Object>();
    m.push_back({r.Get("container_id").As<Napi::Number>().Uint32Value(), r.Get("host_id").As<Napi::Number>().Uint32Value(),
                 r.Get("size").As<Napi::Number>().Uint32Value()});
  }
  return m;
}

class ShiftWorker : public Napi::AsyncWorker {
 public:
  ShiftWorker(Napi::Env env, std::string root, Shifter s)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), root_(std::move(root)), shifter_(std::move(s)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      shifter_.Run(root_);
    } catch (const SysError& e) {
      err_ = e;
      SetError(e.syscall);  // OnError rejects with err_, not this
    }
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(shifter_.overflowed))); }
  void OnError(const Napi::Error&) override { deferred_.Reject(ToJsError(Env(), err_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string root_;
  Shifter shifter_;
  SysError err_;
};

// shiftOwners(root, fromUid, fromGid, toUid, toGid): resolves to the number of ids that had no
// place in the target mapping (made 65534, as the kernel would show them)
Napi::Value ShiftOwners(const Napi::CallbackInfo& info) {
  std::string root = NameFromJs(info[0]);
  auto* w = new ShiftWorker(info.Env(), root, Shifter(MapArg(info[1]), MapArg(info[2]), MapArg(info[3]), MapArg(info[4])));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitShift(Napi::Env env, Napi::Object exports) { exports.Set("shiftOwners", Napi::Function::New(env, ShiftOwners, "shiftOwners")); }

}  // namespace layers
