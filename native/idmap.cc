// Idmapped mounts (docs/images-and-containers.md, "Idmapped mounts"): a user namespace carrying
// given uid/gid maps, and a detached clone of a directory's mount with that mapping attached,
// moved onto a target. The syscalls go by number: glibc before 2.36 has no wrappers for
// open_tree, move_mount and mount_setattr.
#include "idmap.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "errors.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

namespace layers {
namespace {

// <linux/mount.h> struct mount_attr (MOUNT_ATTR_SIZE_VER0), spelled out: that header and
// <sys/mount.h> cannot both be included.
struct MountAttr {
  uint64_t attr_set;
  uint64_t attr_clr;
  uint64_t propagation;
  uint64_t userns_fd;
};

void WriteFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) Fail(errno, "open", path);
  ssize_t n = write(fd, text.data(), text.size());
  int err = errno;
  close(fd);
  if (n < 0) Fail(err, "write", path);
  if (static_cast<size_t>(n) != text.size()) Fail(EINVAL, "write", path);
}

// A child that unshares CLONE_NEWUSER, says so on `ready` and waits until `hold` closes; the
// parent writes its maps, opens /proc/PID/ns/user, lets it go and reaps it. The child only makes
// async-signal-safe calls, so forking a threaded process is safe.
int CreateUserns(const std::string& uidMap, const std::string& gidMap) {
  int ready[2], hold[2];
  if (pipe2(ready, O_CLOEXEC) != 0) Fail(errno, "pipe2");
  if (pipe2(hold, O_CLOEXEC) != 0) {
    int err = errno;
    close(ready[0]);
    close(ready[1]);
    Fail(err, "pipe2");
  }
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    for (int fd : {ready[0], ready[1], hold[0], hold[1]}) close(fd);
    Fail(err, "fork");
  }
  if (pid == 0) {
    close(ready[0]);
    close(hold[1]);
    char ok = unshare(CLONE_NEWUSER) == 0 ? 1 : 0;
    if (write(ready[1], &ok, 1) != 1) _exit(1);
    char c;
    while (read(hold[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(hold[0]);
  SysError failure;
  int nsfd = -1;
  char ok = 0;
  ssize_t n;
  while ((n = read(ready[0], &ok, 1)) < 0 && errno == EINTR) {
  }
  std::string proc = "/proc/" + std::to_string(pid);
  try {
    if (n != 1 || !ok) Fail(EPERM, "unshare", "CLONE_NEWUSER");
    WriteFile(proc + "/uid_map", uidMap);
    WriteFile(proc + "/gid_map", gidMap);
    nsfd = open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) Fail(errno, "open", proc + "/ns/user");
  } catch (const SysError& e) {
    failure = e;
  }
  close(ready[0]);
  close(hold[1]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (nsfd < 0) throw failure;
  return nsfd;
}

// open_tree(OPEN_TREE_CLONE) of source, MOUNT_ATTR_IDMAP with the user namespace, move_mount
// onto target. Without `recursive` only source's own mount is cloned (mounts below it, which
// may be of filesystems that cannot be idmapped, are left out).
void MountIdmapped(const std::string& source, const std::string& target, int usernsFd, bool recursive) {
  int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, source.c_str(),
                                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0)));
  if (tree < 0) Fail(errno, "open_tree", source);
  MountAttr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(usernsFd);
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) != 0) {
    int err = errno;
    close(tree);
    Fail(err, "mount_setattr", source);
  }
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    int err = errno;
    close(tree);
    Fail(err, "move_mount", target);
  }
  close(tree);
}

Napi::Value CreateUsernsJs(const Napi::CallbackInfo& info) {
  try {
    return Napi::Number::New(info.Env(), CreateUserns(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value()));
  } catch (const SysError& e) {
    throw ToJsError(info.Env(), e);
  }
}

Napi::Value MountIdmappedJs(const Napi::CallbackInfo& info) {
  try {
    MountIdmapped(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value(),
                  info[2].As<Napi::Number>().Int32Value(), info.Length() > 3 && info[3].ToBoolean().Value());
  } catch (const SysError& e) {
    throw ToJsError(info.Env(), e);
  }
  return info.Env().Undefined();
}

}  // namespace

void InitIdmap(Napi::Env env, Napi::Object exports) {
  exports.Set("createUserns", Napi::Function::New(env, CreateUsernsJs, "createUserns"));
  exports.Set("mountIdmapped", Napi::Function::New(env, MountIdmappedJs, "mountIdmapped"));
}

}  // namespace layers
