#include "resolve.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <cstring>
#include <vector>

#include "errors.h"

namespace layers {

int Openat2(int dirfd, const char* path, int flags, int mode, unsigned long long resolve) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<unsigned long long>(flags);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? static_cast<unsigned long long>(mode) : 0;
  how.resolve = resolve;
  for (;;) {
    long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN) return static_cast<int>(fd);
    // EAGAIN: a rename raced the resolution; try again
  }
}

ParentCache::~ParentCache() { Reset(); }

void ParentCache::Reset() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  dir_.clear();
}

int ParentCache::Parent(const std::string& rel, std::string& base) {
  size_t slash = rel.rfind('/');
  if (slash == std::string::npos) {
    base = rel;
    return root_;
  }
  base = rel.substr(slash + 1);
  std::string dir = rel.substr(0, slash);
  if (fd_ >= 0 && dir == dir_) return fd_;
  Reset();
  int fd = Openat2(root_, dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
  if (fd < 0) Fail(errno, "openat2", rel);
  fd_ = fd;
  dir_ = dir;
  return fd_;
}

int ParentCache::MakeParent(const std::string& rel, std::string& base) {
  try {
    return Parent(rel, base);
  } catch (const SysError& e) {
    if (e.err != ENOENT) throw;
  }
  std::string dir = rel.substr(0, rel.rfind('/'));
  // the longest prefix that exists, then each missing component below it
  size_t have = dir.size();
  int fd = -1;
  while (fd < 0) {
    have = dir.rfind('/', have - 1);
    if (have == std::string::npos) {
      have = 0;
      fd = openat(root_, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) Fail(errno, "openat", rel);
      break;
    }
    std::string prefix = dir.substr(0, have);
    fd = Openat2(root_, prefix.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    if (fd < 0 && errno != ENOENT) Fail(errno, "openat2", rel);
    if (fd >= 0) have++;  // past the slash
  }
  struct stat rootSt;
  if (fstat(root_, &rootSt) != 0) Fail(errno, "fstat", rel);
  uid_t uid = ownerSet_ ? ownerUid_ : rootSt.st_uid;
  gid_t gid = ownerSet_ ? ownerGid_ : rootSt.st_gid;
  while (have < dir.size()) {
    size_t next = dir.find('/', have);
    if (next == std::string::npos) next = dir.size();
    std::string comp = dir.substr(have, next - have);
    if (mkdirat(fd, comp.c_str(), 0755) == 0) {
      struct stat in;
      if (fstat(fd, &in) != 0) Fail(errno, "fstat", rel);
      if (fchownat(fd, comp.c_str(), uid, (in.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : gid, AT_SYMLINK_NOFOLLOW) != 0) Fail(errno, "fchownat", rel);
    } else if (errno != EEXIST) {
      int e = errno;
      close(fd);
      Fail(e, "mkdirat", rel);
    }
    int sub = Openat2(fd, comp.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    int e = errno;
    close(fd);
    if (sub < 0) Fail(e, "openat2", rel);
    fd = sub;
    have = next + 1;
  }
  close(fd);
  return Parent(rel, base);
}

void ClearDir(int dirfd, const std::string& what) {
  int dup = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) Fail(errno, "openat", what);
  DIR* d = fdopendir(dup);
  if (!d) {
    close(dup);
    Fail(errno, "fdopendir", what);
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  closedir(d);
  for (const auto& n : names) RemoveAt(dirfd, n, what + "/" + n);
}

bool RemoveAt(int dirfd, const std::string& name, const std::string& what) {
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    Fail(errno, "fstatat", what);
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) Fail(errno, "openat", what);
    try {
      ClearDir(fd, what);
    } catch (...) {
      close(fd);
      throw;
    }
    close(fd);
    if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) Fail(errno, "unlinkat", what);
  } else if (unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    Fail(errno, "unlinkat", what);
  }
  return true;
}

}  // namespace layers
