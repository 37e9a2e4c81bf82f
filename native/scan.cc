#include "scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "names.h"

namespace layers {
namespace {

struct Child {
  std::string name;
  struct stat st;
  std::string link;
  bool hasLink = false;
  std::vector<std::pair<std::string, std::vector<char>>> xattrs;
};

#ifndef SYS_listxattrat
#define SYS_listxattrat 465  // Linux 6.13, the same number on every architecture
#endif

// listxattrat(2) names the file by dirfd + name: no /proc path walk per file, which cost as much
// as the stat itself. Older kernels: the /proc/self/fd path, which l* calls do not follow.
bool haveListxattrat = true;

ssize_t ListXattr(int dirfd, const std::string& name, const std::string& procPath, char* buf, size_t size) {
  if (haveListxattrat) {
    ssize_t n = syscall(SYS_listxattrat, dirfd, name.c_str(), AT_SYMLINK_NOFOLLOW, buf, size);
    if (n >= 0 || errno != ENOSYS) return n;
    haveListxattrat = false;
  }
  return llistxattr(procPath.c_str(), buf, size);
}

// xattrs of dirfd/name without following a final symlink (symlinks cannot be opened for f*xattr)
void ReadXattrs(int dirfd, Child& c, const std::string& dirPath) {
  std::string p = "/proc/self/fd/" + std::to_string(dirfd) + "/" + c.name;
  std::vector<char> names;
  for (;;) {
    ssize_t len = ListXattr(dirfd, c.name, p, nullptr, 0);
    if (len <= 0) {
      if (len < 0 && errno != ENOTSUP && errno != ENOENT) Fail(errno, "llistxattr", dirPath + "/" + c.name);
      return;
    }
    names.resize(static_cast<size_t>(len));
    ssize_t got = ListXattr(dirfd, c.name, p, names.data(), names.size());
    if (got < 0) {
      if (errno == ERANGE) continue;
      Fail(errno, "llistxattr", dirPath + "/" + c.name);
    }
    names.resize(static_cast<size_t>(got));
    break;
  }
  std::vector<std::string> keys;
  for (size_t i = 0; i < names.size();) {
    std::string k(names.data() + i);
    i += k.size() + 1;
    if (!k.empty()) keys.push_back(k);
  }
  std::sort(keys.begin(), keys.end());
  for (const auto& k : keys) {
    std::vector<char> v;
    for (;;) {
      ssize_t len = lgetxattr(p.c_str(), k.c_str(), nullptr, 0);
      if (len < 0) {
        if (errno == ENODATA) break;
        Fail(errno, "lgetxattr", dirPath + "/" + c.name);
      }
      v.resize(static_cast<size_t>(len));
      ssize_t got = len ? lgetxattr(p.c_str(), k.c_str(), v.data(), v.size()) : 0;
      if (got < 0) {
        if (errno == ERANGE) continue;
        if (errno == ENODATA) break;
        Fail(errno, "lgetxattr", dirPath + "/" + c.name);
      }
      v.resize(static_cast<size_t>(got));
      c.xattrs.emplace_back(k, std::move(v));
      break;
    }
  }
}

Napi::Value ScanDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = NameFromJs(info[0]);
  bool withXattrs = info.Length() > 1 && info[1].ToBoolean().Value();
  std::vector<Child> kids;
  try {
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) Fail(errno, "open", path);
    DIR* d = fdopendir(fd);
    if (!d) {
      int e = errno;
      close(fd);
      Fail(e, "fdopendir", path);
    }
    try {
      errno = 0;
      while (struct dirent* e = readdir(d)) {
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
        Child c;
        c.name = e->d_name;
        if (fstatat(fd, c.name.c_str(), &c.st, AT_SYMLINK_NOFOLLOW) != 0) {
          if (errno == ENOENT) continue;  // removed while we looked
          Fail(errno, "fstatat", path + "/" + c.name);
        }
        if (S_ISLNK(c.st.st_mode)) {
          std::vector<char> buf(static_cast<size_t>(c.st.st_size > 0 ? c.st.st_size : 255) + 1);
          for (;;) {
            ssize_t n = readlinkat(fd, c.name.c_str(), buf.data(), buf.size());
            if (n < 0) Fail(errno, "readlinkat", path + "/" + c.name);
            if (static_cast<size_t>(n) < buf.size()) {
              c.link.assign(buf.data(), static_cast<size_t>(n));
              break;
            }
            buf.resize(buf.size() * 2);
          }
          c.hasLink = true;
        }
        if (withXattrs) ReadXattrs(fd, c, path);
        kids.push_back(std::move(c));
      }
      closedir(d);
    } catch (...) {
      closedir(d);
      throw;
    }
  } catch (const SysError& e) {
    throw ToJsError(env, e);
  }
  // byte order: the same tree always gives the same walk, whatever the locale
  std::sort(kids.begin(), kids.end(), [](const Child& a, const Child& b) { return a.name < b.name; });
  Napi::Array out = Napi::Array::New(env, kids.size());
  auto num = [&](double v) { return Napi::Number::New(env, v); };
  for (size_t i = 0; i < kids.size(); i++) {
    const Child& c = kids[i];
    Napi::Array a = Napi::Array::New(env, 13);
    a.Set(0u, NameToJs(env, c.name));
    a.Set(1u, num(c.st.st_mode));
    a.Set(2u, num(c.st.st_uid));
    a.Set(3u, num(c.st.st_gid));
    a.Set(4u, num(static_cast<double>(c.st.st_size)));
    a.Set(5u, num(static_cast<double>(c.st.st_mtim.tv_sec)));
    a.Set(6u, num(static_cast<double>(c.st.st_mtim.tv_nsec)));
    a.Set(7u, num(static_cast<double>(c.st.st_rdev)));
    a.Set(8u, num(static_cast<double>(c.st.st_nlink)));
    a.Set(9u, num(static_cast<double>(c.st.st_ino)));
    a.Set(10u, num(static_cast<double>(c.st.st_dev)));
    if (c.hasLink) a.Set(11u, NameToJs(env, c.link));
    if (!c.xattrs.empty()) {
      Napi::Array xa = Napi::Array::New(env, c.xattrs.size());
      for (size_t k = 0; k < c.xattrs.size(); k++) {
        Napi::Array pair = Napi::Array::New(env, 2);
        pair.Set(0u, NameToJs(env, c.xattrs[k].first));
        pair.Set(1u, Napi::Buffer<char>::Copy(env, c.xattrs[k].second.data(), c.xattrs[k].second.size()));
        xa.Set(static_cast<uint32_t>(k), pair);
      }
      a.Set(12u, xa);
    }
    out.Set(static_cast<uint32_t>(i), a);
  }
  return out;
}

}  // namespace

void InitScan(Napi::Env env, Napi::Object exports) { exports.Set("scanDir", Napi::Function::New(env, ScanDir, "scanDir")); }

}  // namespace layers
