// Every path a batch touches is resolved beneath a root: the parent directory is opened with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), and the last component is acted on with
// *at() calls that never follow it. An escape attempt (.., an absolute or climbing symlink)
// fails with EXDEV.
#pragma once
#include <string>

namespace layers {

int Openat2(int dirfd, const char* path, int flags, int mode, unsigned long long resolve);

// Opens (and caches) parent directories of relative paths beneath one root.
class ParentCache {
 public:
  explicit ParentCache(int rootFd) : root_(rootFd) {}
  ~ParentCache();
  ParentCache(const ParentCache&) = delete;
  ParentCache& operator=(const ParentCache&) = delete;
  // The fd of rel's parent directory (the root itself for a top-level name); `base` gets the
  // last component. The fd stays owned by the cache. Throws SysError naming rel.
  int Parent(const std::string& rel, std::string& base);
  // The same, making missing parent directories (0755, owned like the root, or by the owner
  // SetParentOwner gave; in a setgid directory the group is the one the kernel gives, as the
  // peer's MkdirAll keeps it), as tar does: a layer tar may name a file before, or without, its directory.
  int MakeParent(const std::string& rel, std::string& base);
  // The owner of the parents MakeParent makes: the layer root's before a tar's '.' changed it.
  void SetParentOwner(unsigned uid, unsigned gid) { ownerSet_ = true, ownerUid_ = uid, ownerGid_ = gid; }
  // Forget the cached parent: its directory may have been removed or replaced.
  void Reset();
  int root() const { return root_; }

 private:
  int root_;
  std::string dir_;
  int fd_ = -1;
  bool ownerSet_ = false;
  unsigned ownerUid_ = 0, ownerGid_ = 0;
};

// Remove name in dir, recursively for a directory, never following a symlink.
// Returns false when there was nothing there.
bool RemoveAt(int dirfd, const std::string& name, const std::string& what);
// Remove every entry of the directory dirfd, keeping it.
void ClearDir(int dirfd, const std::string& what);

}  // namespace layers
