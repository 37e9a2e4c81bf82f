#include "btrfs.h"

#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "js.h"

namespace layers {
namespace {

// The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID).
constexpr ino_t kSubvolRootIno = 256;

// An fd closed on every path out, errors included.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

int OpenDir(const std::string& p) {
  int fd = open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) Fail(errno, "open", p);
  return fd;
}

// Copy a subvolume name into an ioctl's fixed-size name field; a longer name (or one with a '/')
// is the kernel's EINVAL/ENAMETOOLONG, said before the call so the message names it.
void SetName(char* dst, size_t cap, const std::string& name, const std::string& full) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") Fail(EINVAL, "btrfs subvolume name", full);
  if (name.size() >= cap) Fail(ENAMETOOLONG, "btrfs subvolume name", full);
  std::memcpy(dst, name.c_str(), name.size() + 1);
}

std::string Join(const std::string& dir, const std::string& name) { return dir + "/" + name; }

// The ioctls that name a subvolume inside a directory (create, delete) with btrfs_ioctl_vol_args.
void VolIoctl(const std::string& dir, const std::string& name, unsigned long request, const char* requestName) {
  std::string full = Join(dir, name);
  Fd d(OpenDir(dir));
  struct btrfs_ioctl_vol_args args;
  std::memset(&args, 0, sizeof args);
  SetName(args.name, sizeof args.name, name, full);
  if (ioctl(d.fd, request, &args) != 0) Fail(errno, requestName, full);
}

// btrfsSubvolCreate(dir, name)
Napi::Value SubvolCreate(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    VolIoctl(StrArg(info, 0), StrArg(info, 1), BTRFS_IOC_SUBVOL_CREATE, "BTRFS_IOC_SUBVOL_CREATE");
    return info.Env().Undefined();
  });
}

// btrfsSnapshot(src, dstDir, name, readOnly)
Napi::Value Snapshot(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string src = StrArg(info, 0), dir = StrArg(info, 1), name = StrArg(info, 2), full = Join(dir, name);
    bool readOnly = info.Length() > 3 && info[3].ToBoolean().Value();
    Fd s(OpenDir(src));
    Fd d(OpenDir(dir));
    struct btrfs_ioctl_vol_args_v2 args;
    std::memset(&args, 0, sizeof args);
    args.fd = s.fd;
    if (readOnly) args.flags |= BTRFS_SUBVOL_RDONLY;
    SetName(args.name, sizeof args.name, name, full);
    if (ioctl(d.fd, BTRFS_IOC_SNAP_CREATE_V2, &args) != 0) Fail(errno, "BTRFS_IOC_SNAP_CREATE_V2", full);
    return info.Env().Undefined();
  });
}

// btrfsSubvolDelete(dir, name): the subvolume must hold no other subvolume (ENOTEMPTY)
Napi::Value SubvolDelete(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    VolIoctl(StrArg(info, 0), StrArg(info, 1), BTRFS_IOC_SNAP_DESTROY, "BTRFS_IOC_SNAP_DESTROY");
    return info.Env().Undefined();
  });
}

// btrfsIsSubvolume(path): a directory on btrfs whose inode is a subvolume root; never follows
// a final symlink
Napi::Value IsSubvolume(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) Fail(errno, "lstat", p);
    if (!S_ISDIR(st.st_mode) || st.st_ino != kSubvolRootIno) return Napi::Boolean::New(info.Env(), false);
    struct statfs sf;
    if (statfs(p.c_str(), &sf) != 0) Fail(errno, "statfs", p);
    return Napi::Boolean::New(info.Env(), static_cast<unsigned long>(sf.f_type) == BTRFS_SUPER_MAGIC);
  });
}

// btrfsGetReadOnly(path) / btrfsSetReadOnly(path, ro): the subvolume's ro property
// (BTRFS_IOC_SUBVOL_GETFLAGS / SETFLAGS); other flags are kept
__u64 GetFlags(int fd, const std::string& p) {
  __u64 flags = 0;
  if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) != 0) Fail(errno, "BTRFS_IOC_SUBVOL_GETFLAGS", p);
  return flags;
}

Napi::Value GetReadOnly(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    Fd d(OpenDir(p));
    return Napi::Boolean::New(info.Env(), (GetFlags(d.fd, p) & BTRFS_SUBVOL_RDONLY) != 0);
  });
}

Napi::Value SetReadOnly(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    bool ro = info[1].ToBoolean().Value();
    Fd d(OpenDir(p));
    __u64 flags = GetFlags(d.fd, p);
    flags = ro ? (flags | BTRFS_SUBVOL_RDONLY) : (flags & ~static_cast<__u64>(BTRFS_SUBVOL_RDONLY));
    if (ioctl(d.fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) != 0) Fail(errno, "BTRFS_IOC_SUBVOL_SETFLAGS", p);
    return info.Env().Undefined();
  });
}

// btrfsQuotaEnable(path): turn on quota groups for the filesystem holding path (a no-op when
// they are on); the kernel starts the rescan that accounts what is already there
Napi::Value QuotaEnable(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    Fd d(OpenDir(p));
    struct btrfs_ioctl_quota_ctl_args args;
    std::memset(&args, 0, sizeof args);
    args.cmd = BTRFS_QUOTA_CTL_ENABLE;
    if (ioctl(d.fd, BTRFS_IOC_QUOTA_CTL, &args) != 0) Fail(errno, "BTRFS_IOC_QUOTA_CTL", p);
    return info.Env().Undefined();
  });
}

// btrfsQgroupLimit(path, bytes): cap what the subvolume at path may reference (its own qgroup,
// id 0 meaning "the subvolume of this fd")
Napi::Value QgroupLimit(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    Fd d(OpenDir(p));
    struct btrfs_ioctl_qgroup_limit_args args;
    std::memset(&args, 0, sizeof args);
    args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
    args.lim.max_rfer = static_cast<__u64>(I64Arg(info, 1));
    if (ioctl(d.fd, BTRFS_IOC_QGROUP_LIMIT, &args) != 0) Fail(errno, "BTRFS_IOC_QGROUP_LIMIT", p);
    return info.Env().Undefined();
  });
}

// btrfsFsid(path): the filesystem's uuid as /sys/fs/btrfs/ names it
Napi::Value Fsid(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    std::string p = StrArg(info, 0);
    Fd d(OpenDir(p));
    struct btrfs_ioctl_fs_info_args args;
    std::memset(&args, 0, sizeof args);
    if (ioctl(d.fd, BTRFS_IOC_FS_INFO, &args) != 0) Fail(errno, "BTRFS_IOC_FS_INFO", p);
    char out[37];
    const unsigned char* u = args.fsid;
    std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
                  u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    return Napi::String::New(info.Env(), out);
  });
}

}  // namespace

void InitBtrfs(Napi::Env env, Napi::Object exports) {
  exports.Set("btrfsSubvolCreate", Napi::Function::New(env, SubvolCreate, "btrfsSubvolCreate"));
  exports.Set("btrfsSnapshot", Napi::Function::New(env, Snapshot, "btrfsSnapshot"));
  exports.Set("btrfsSubvolDelete", Napi::Function::New(env, SubvolDelete, "btrfsSubvolDelete"));
  exports.Set("btrfsIsSubvolume", Napi::Function::New(env, IsSubvolume, "btrfsIsSubvolume"));
  exports.Set("btrfsGetReadOnly", Napi::Function::New(env, GetReadOnly, "btrfsGetReadOnly"));
  exports.Set("btrfsSetReadOnly", Napi::Function::New(env, SetReadOnly, "btrfsSetReadOnly"));
  exports.Set("btrfsQuotaEnable", Napi::Function::New(env, QuotaEnable, "btrfsQuotaEnable"));
  exports.Set("btrfsQgroupLimit", Napi::Function::New(env, QgroupLimit, "btrfsQgroupLimit"));
  exports.Set("btrfsFsid", Napi::Function::New(env, Fsid, "btrfsFsid"));
}

}  // namespace layers
