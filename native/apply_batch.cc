// applyBatch / applyBatchSync: see ApplyOp in lib/native.ts for the semantics of each op.
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "batch.h"
#include "cancel.h"
#include "copy.h"
#include "errors.h"
#include "hash.h"
#include "js.h"
#include "resolve.h"

namespace layers {
namespace {

enum class Kind { File, Dir, Symlink, Hardlink, Mknod, Remove, Clear, Times, Parents };

struct Op {
  Kind kind;
  std::string path, target;
  uint32_t mode = 0;
  uint32_t uid = 0, gid = 0;
  uint32_t major = 0, minor = 0;
  bool hasTimes = false;
  bool hasOwner = false;
  bool hasStatTarget = false;
  std::string statTarget;  // a hardlink's target as the tar wrote it (K9)
  struct timespec times[2] = {};  // atime, mtime
  std::vector<std::pair<std::string, std::vector<char>>> xattrs;
  int srcFd = -1;
  int64_t srcOffset = 0;
  uint64_t size = 0;
  bool sparse = false;
  uint64_t realSize = 0;
  std::vector<std::pair<uint64_t, uint64_t>> map;
  Sha256* hash = nullptr;
};

struct Result {
  CopyStats stats;
  uint64_t ops = 0;
};

// applyBatch's optional third argument, [uid, gid]: the owner of the missing parents it makes
struct ParentOwner {
  bool set = false;
  uint32_t uid = 0, gid = 0;
};

ParentOwner ParentOwnerOf(const Napi::CallbackInfo& info) {
  ParentOwner o;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array a = info[2].As<Napi::Array>();
    o.set = true;
    o.uid = a.Get(0u).As<Napi::Number>().Uint32Value();
    o.gid = a.Get(1u).As<Napi::Number>().Uint32Value();
  }
  return o;
}

// ---- parsing on the main thread: everything is copied out of JS before the worker runs

uint32_t U32(Napi::Object o, const char* k) { return o.Get(k).As<Napi::Number>().Uint32Value(); }

Op Parse(Napi::Object o, std::vector<Napi::ObjectReference>& keep) {
  Op op;
  std::string k = o.Get("op").As<Napi::String>().Utf8Value();
  if (k == "file") op.kind = Kind::File;
  else if (k == "dir") op.kind = Kind::Dir;
  else if (k == "symlink") op.kind = Kind::Symlink;
  else if (k == "hardlink") op.kind = Kind::Hardlink;
  else if (k == "mknod") op.kind = Kind::Mknod;
  else if (k == "remove") op.kind = Kind::Remove;
  else if (k == "clear") op.kind = Kind::Clear;
  else if (k == "times") op.kind = Kind::Times;
  else if (k == "parents") op.kind = Kind::Parents;
  else throw Napi::TypeError::New(o.Env(), "applyBatch: unknown op '" + k + "'");
  op.path = NameFromJs(o.Get("path"));
  if (op.path.empty() || op.path[0] == '/') throw Napi::TypeError::New(o.Env(), "applyBatch: path must be relative: '" + op.path + "'");
  if (o.Has("target")) op.target = NameFromJs(o.Get("target"));
  if (o.Has("statTarget")) op.statTarget = NameFromJs(o.Get("statTarget")), op.hasStatTarget = true;
  if (o.Has("mode")) op.mode = U32(o, "mode");
  if (o.Has("uid")) op.uid = U32(o, "uid"), op.hasOwner = true;
  if (o.Has("gid")) op.gid = U32(o, "gid");
  if (o.Has("major")) op.major = U32(o, "major");
  if (o.Has("minor")) op.minor = U32(o, "minor");
  Napi::Value mt = o.Get("mtime");
  if (mt.IsObject()) {
    op.hasTimes = true;
    op.times[1] = TimespecOf(mt);
    Napi::Value at = o.Get("atime");
    op.times[0] = at.IsObject() ? TimespecOf(at) : op.times[1];
  }
  Napi::Value xa = o.Get("xattrs");
  if (xa.IsArray()) {
    Napi::Array a = xa.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Array pair = a.Get(i).As<Napi::Array>();
      auto v = pair.Get(1u).As<Napi::Buffer<char>>();
      op.xattrs.emplace_back(NameFromJs(pair.Get(0u)), std::vector<char>(v.Data(), v.Data() + v.Length()));
    }
  }
  if (op.kind == Kind::File) {
    op.srcFd = o.Get("srcFd").As<Napi::Number>().Int32Value();
    op.srcOffset = o.Get("srcOffset").As<Napi::Number>().Int64Value();
    op.size = static_cast<uint64_t>(o.Get("size").As<Napi::Number>().Int64Value());
    Napi::Value sp = o.Get("sparse");
    if (sp.IsObject()) {
      Napi::Object s = sp.As<Napi::Object>();
      op.sparse = true;
      op.realSize = static_cast<uint64_t>(s.Get("realSize").As<Napi::Number>().Int64Value());
      Napi::Array m = s.Get("map").As<Napi::Array>();
      for (uint32_t i = 0; i < m.Length(); i++) {
        Napi::Object seg = m.Get(i).As<Napi::Object>();
        op.map.emplace_back(static_cast<uint64_t>(seg.Get("offset").As<Napi::Number>().Int64Value()),
                            static_cast<uint64_t>(seg.Get("length").As<Napi::Number>().Int64Value()));
      }
    }
    Napi::Value h = o.Get("hash");
    if (!h.IsUndefined() && !h.IsNull()) {
      op.hash = Sha256::Unwrap(h);
      if (!op.hash) throw Napi::TypeError::New(o.Env(), "applyBatch: hash must come from sha256()");
      keep.push_back(Napi::Persistent(h.As<Napi::Object>()));
    }
  }
  return op;
}

// ---- execution (any thread)

std::string ProcPath(int dirfd, const std::string& base) { return "/proc/self/fd/" + std::to_string(dirfd) + "/" + base; }

void SetXattrsFd(int fd, const Op& op) {
  for (const auto& [k, v] : op.xattrs)
    if (fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) != 0) Fail(errno, "fsetxattr", op.path);
}

// Symlinks and device nodes cannot be opened for fsetxattr: name them through the parent's fd.
void SetXattrsAt(int dirfd, const std::string& base, const Op& op) {
  if (op.xattrs.empty()) return;
  std::string p = ProcPath(dirfd, base);
  for (const auto& [k, v] : op.xattrs)
    if (lsetxattr(p.c_str(), k.c_str(), v.data(), v.size(), 0) != 0) Fail(errno, "lsetxattr", op.path);
}

[[noreturn]] void Truncated(const Op& op, uint64_t got, uint64_t want) {
  FailWith("ETARTRUNCATED", ENODATA, "read", op.path,
           "the input ends inside the body: " + std::to_string(got) + " of " + std::to_string(want) + " bytes");
}

class Runner {
 public:
  Runner(int rootFd, const ParentOwner& owner) : parents_(rootFd), targets_(rootFd) {
    if (owner.set) parents_.SetParentOwner(owner.uid, owner.gid);
  }

  void Run(const Op& op, Result& r) {
    std::string base;
    if (op.kind == Kind::Clear && op.path == ".") return ClearDir(parents_.root(), op.path);
    int dir;
    if (op.kind == Kind::Remove || op.kind == Kind::Clear || op.kind == Kind::Times) {
      try {
        dir = parents_.Parent(op.path, base);
      } catch (const SysError& e) {
        if (e.err == ENOENT && op.kind != Kind::Times) return;  // nothing there to remove
        throw;
      }
    } else {
      dir = parents_.MakeParent(op.path, base);
    }
    if (base == "." || base == "..") Fail(EINVAL, "apply", op.path);
    switch (op.kind) {
      case Kind::File: return File(dir, base, op, r);
      case Kind::Dir: return Dir(dir, base, op);
      case Kind::Symlink: {
        Create(dir, base, op, [&] { return symlinkat(op.target.c_str(), dir, base.c_str()); }, "symlinkat");
        if (fchownat(dir, base.c_str(), op.uid, op.gid, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "fchownat", op.path);
        SetXattrsAt(dir, base, op);
        return Times(dir, base, op);
      }
      case Kind::Hardlink: {
        std::string tbase;
        int tdir = targets_.Parent(op.target, tbase);
        Create(dir, base, op, [&] { return linkat(tdir, tbase.c_str(), dir, base.c_str(), 0); }, "linkat");
        return LinkedInode(dir, base, op);
      }
      case Kind::Mknod: {
        Create(dir, base, op, [&] { return mknodat(dir, base.c_str(), op.mode, makedev(op.major, op.minor)); }, "mknodat");
        if (fchownat(dir, base.c_str(), op.uid, op.gid, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "fchownat", op.path);
        if (fchmodat(dir, base.c_str(), op.mode & 07777, 0) != 0) Fail(errno, "fchmodat", op.path);
        SetXattrsAt(dir, base, op);
        return Times(dir, base, op);
      }
      case Kind::Remove:
        RemoveAt(dir, base, op.path);
        return;
      case Kind::Clear: {
        int fd = openat(dir, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
          if (errno == ENOENT) return;
          Fail(errno, "openat", op.path);
        }
        try {
          ClearDir(fd, op.path);
        } catch (...) {
          close(fd);
          throw;
        }
        close(fd);
        return;
      }
      case Kind::Times:
        return Times(dir, base, op);
      case Kind::Parents:
        return;  // MakeParent above made what was missing
    }
  }

  // Forget cached parent directories when the op just run may have removed or replaced one.
  // Not done in the middle of an op: its own parent fds are still in use there.
  void AfterOp(const Op& op) {
    if (removed_ || op.kind == Kind::Remove || op.kind == Kind::Clear) {
      parents_.Reset();
      targets_.Reset();
    }
    removed_ = false;
  }

 private:
  // make a non-directory: whatever stands at the name (a directory too) is removed first
  template <typename F>
  void Create(int dir, const std::string& base, const Op& op, F make, const char* syscall) {
    if (make() == 0) return;
    if (errno != EEXIST) Fail(errno, syscall, op.path);
    RemoveAt(dir, base, op.path);
    removed_ = true;
    if (make() != 0) Fail(errno, syscall, op.path);
  }

  // A hardlink entry with an owner: the peer sets it, the xattrs and (on anything but a symlink)
  // the mode and times on the linked inode (docs/tar-engine.md, K4). Chown first: it clears setuid.
  void LinkedInode(int dir, const std::string& base, const Op& op) {
    if (!op.hasOwner) return;
    struct stat st;
    if (fstatat(dir, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "fstatat", op.path);
    // only a change of owner: a chown clears security.capability, and the peer's SafeLchown
    // skips it when the ids are already those (found by the differential fuzzer)
    if ((st.st_uid != op.uid || st.st_gid != op.gid) && fchownat(dir, base.c_str(), op.uid, op.gid, AT_SYMLINK_NOFOLLOW) != 0)
      Fail(errno, "fchownat", op.path);
    SetXattrsAt(dir, base, op);
    // The peer sets them only if os.Lstat(linkname) succeeds in its chroot on the raw target
    // name: 'b/' on a file or 'a/../b' with 'a' no directory fail there (ENOTDIR), and it skips
    bool targetIsLink = S_ISLNK(st.st_mode);
    if (op.hasStatTarget) {
      int fd = Openat2(parents_.root(), op.statTarget.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
      if (fd < 0) return;
      struct stat as;
      bool isLink = fstat(fd, &as) == 0 && S_ISLNK(as.st_mode);
      close(fd);
      if (isLink) return;
      // 'a/' where 'a' is a symlink: the peer's lstat follows it and its chmod and chtimes then
      // change what the symlink points to (found by the fuzzer: the layer root): refused
      if (targetIsLink)
        FailWith("ETARFORMAT", EINVAL, "link", op.path,
                 "a hardlink to a symlink named as a directory ('" + op.statTarget + "'): the peer would change the mode and times of what the symlink points to");
    }
    if (targetIsLink) return;
    if (fchmodat(dir, base.c_str(), op.mode & 07777, 0) != 0) Fail(errno, "fchmodat", op.path);
    Times(dir, base, op);
  }

  void Times(int dir, const std::string& base, const Op& op) {
    if (op.hasTimes && utimensat(dir, base.c_str(), op.times, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "utimensat", op.path);
  }

  // A body that is the whole of a regular file (the tree copy's, drivers/trees.ts copyItems) is
  // cloned whole, as cp --reflink does, whatever its size: CopyRange copies bodies under
  // kMinCloneBtrfs on btrfs (a clone there pays for the destination's writeback, which a new
  // empty file does not have), and that put every 2-64 KiB file of a rechunked image into new
  // data extents again (docs/performance.md, "Rechunk"). false (nothing moved): copy it.
  static bool CloneWholeFile(int src, int dst, uint64_t size) {
    struct stat st;
    if (fstat(src, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != size) return false;
    return ioctl(dst, FICLONE, src) == 0;
  }

  void File(int dir, const std::string& base, const Op& op, Result& r) {
    int fd = -1;
    // Made with its final permission bits, so that where the umask, the parent's default ACL
    // and group leave the new file as the tar wants it, the fstat below finds nothing to change:
    // a chown and a chmod are each a metadata transaction (measured on btrfs: with the times,
    // the three took more kernel time than copying a 21 KB body), one fstat is a lookup.
    mode_t want = op.mode & 07777;
    Create(dir, base, op, [&] { return (fd = openat(dir, base.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, want & 0777)) >= 0 ? 0 : -1; }, "openat");
    try {
      if (!tgtKnown_) {
        tgt_ = ProbeTarget(fd);
        tgtKnown_ = true;
      }
      if (op.sparse) {
        if (ftruncate(fd, static_cast<off_t>(op.realSize)) != 0) Fail(errno, "ftruncate", op.path);
        uint64_t consumed = 0;
        for (const auto& [off, len] : op.map) {
          int64_t from = op.srcOffset < 0 ? -1 : op.srcOffset + static_cast<int64_t>(consumed);
          uint64_t got = CopyRange(op.srcFd, from, fd, static_cast<int64_t>(off), len, kAuto, tgt_, buf_, r.stats, op.hash);
          if (got < len) Truncated(op, consumed + got, op.size);
          consumed += len;
        }
      } else if (op.size > 0 && op.srcOffset == 0 && !op.hash && CloneWholeFile(op.srcFd, fd, op.size)) {
        r.stats.bytes[kFiclone] += op.size;
      } else if (op.size > 0) {
        uint64_t got = CopyRange(op.srcFd, op.srcOffset, fd, 0, op.size, kAuto, tgt_, buf_, r.stats, op.hash);
        if (got < op.size) Truncated(op, got, op.size);
      }
      struct stat st;
      if (fstat(fd, &st) != 0) Fail(errno, "fstat", op.path);
      bool chowned = st.st_uid != op.uid || st.st_gid != op.gid;
      if (chowned && fchown(fd, op.uid, op.gid) != 0) Fail(errno, "fchown", op.path);
      // after chown, which clears setuid and setgid
      if ((chowned || (st.st_mode & 07777) != want) && fchmod(fd, want) != 0) Fail(errno, "fchmod", op.path);
      SetXattrsFd(fd, op);
      if (op.hasTimes && futimens(fd, op.times) != 0) Fail(errno, "futimens", op.path);
    } catch (...) {
      close(fd);
      throw;
    }
    close(fd);
  }

  void Dir(int dir, const std::string& base, const Op& op) {
    if (mkdirat(dir, base.c_str(), 0700) != 0) {
      if (errno != EEXIST) Fail(errno, "mkdirat", op.path);
      struct stat st;
      if (fstatat(dir, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "fstatat", op.path);
      if (!S_ISDIR(st.st_mode)) {
        RemoveAt(dir, base, op.path);
        removed_ = true;
        if (mkdirat(dir, base.c_str(), 0700) != 0) Fail(errno, "mkdirat", op.path);
      }
    }
    int fd = openat(dir, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) Fail(errno, "openat", op.path);
    try {
      if (fchown(fd, op.uid, op.gid) != 0) Fail(errno, "fchown", op.path);
      if (fchmod(fd, op.mode & 07777) != 0) Fail(errno, "fchmod", op.path);
      SetXattrsFd(fd, op);
    } catch (...) {
      close(fd);
      throw;
    }
    close(fd);
  }

  ParentCache parents_;
  ParentCache targets_;
  CopyTarget tgt_;
  bool tgtKnown_ = false;
  bool removed_ = false;  // this op removed something that may have been a cached directory
  std::vector<char> buf_;
};

void RunAll(int rootFd, const std::vector<Op>& ops, const ParentOwner& owner, Result& r) {
  Runner run(rootFd, owner);
  for (size_t i = 0; i < ops.size(); i++) {
    try {
      CheckCancel(ops[i].path);
      run.Run(ops[i], r);
      run.AfterOp(ops[i]);
    } catch (SysError& e) {
      e.index = static_cast<long>(i);
      if (e.path.empty()) e.path = ops[i].path;
      throw;
    }
    r.ops++;
  }
}

Napi::Object ResultJs(Napi::Env env, const Result& r) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Object b = Napi::Object::New(env);
  for (int i = 0; i < kMethods; i++)
    if (r.stats.bytes[i]) b.Set(kMethodNames[i], Napi::Number::New(env, static_cast<double>(r.stats.bytes[i])));
  o.Set("bytes", b);
  o.Set("ops", Napi::Number::New(env, static_cast<double>(r.ops)));
  return o;
}

std::vector<Op> ParseAll(Napi::Array a, std::vector<Napi::ObjectReference>& keep) {
  std::vector<Op> ops;
  ops.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) ops.push_back(Parse(a.Get(i).As<Napi::Object>(), keep));
  return ops;
}

class ApplyWorker : public Napi::AsyncWorker {
 public:
  ApplyWorker(Napi::Env env, int rootFd, std::vector<Op> ops, std::vector<Napi::ObjectReference> keep, ParentOwner owner)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), root_(rootFd), ops_(std::move(ops)), keep_(std::move(keep)), owner_(owner) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      RunAll(root_, ops_, owner_, result_);
    } catch (const SysError& e) {
      err_ = e;
      SetError(e.syscall);  // OnError rejects with err_, not this
    }
  }
  void OnOK() override { deferred_.Resolve(ResultJs(Env(), result_)); }
  void OnError(const Napi::Error&) override { deferred_.Reject(ToJsError(Env(), err_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int root_;
  std::vector<Op> ops_;
  std::vector<Napi::ObjectReference> keep_;  // hashes the ops feed stay alive until done
  ParentOwner owner_;
  Result result_;
  SysError err_;
};

Napi::Value ApplyBatch(const Napi::CallbackInfo& info) {
  std::vector<Napi::ObjectReference> keep;
  std::vector<Op> ops = ParseAll(info[1].As<Napi::Array>(), keep);
  auto* w = new ApplyWorker(info.Env(), info[0].As<Napi::Number>().Int32Value(), std::move(ops), std::move(keep), ParentOwnerOf(info));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value ApplyBatchSync(const Napi::CallbackInfo& info) {
  std::vector<Napi::ObjectReference> keep;
  std::vector<Op> ops = ParseAll(info[1].As<Napi::Array>(), keep);
  Result r;
  try {
    RunAll(info[0].As<Napi::Number>().Int32Value(), ops, ParentOwnerOf(info), r);
  } catch (const SysError& e) {
    throw ToJsError(info.Env(), e);
  }
  return ResultJs(info.Env(), r);
}

}  // namespace

void InitApplyBatch(Napi::Env env, Napi::Object exports) {
  exports.Set("applyBatch", Napi::Function::New(env, ApplyBatch, "applyBatch"));
  exports.Set("applyBatchSync", Napi::Function::New(env, ApplyBatchSync, "applyBatchSync"));
}

}  // namespace layers
