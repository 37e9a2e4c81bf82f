#include "copy.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.h"
#include "hash.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

namespace layers {

const char* const kMethodNames[kMethods] = {"ficlone", "copy_file_range", "sendfile", "splice", "readwrite"};

Method ParseMethod(const char* s) {
  for (int i = 0; i < kMethods; i++)
    if (std::strcmp(s, kMethodNames[i]) == 0) return static_cast<Method>(i);
  return kAuto;
}

bool IsStream(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode);
}

CopyTarget ProbeTarget(int outFd) {
  CopyTarget t;
  t.outIsStream = IsStream(outFd);
  struct statfs sf;
  if (!t.outIsStream && fstatfs(outFd, &sf) == 0) {
    // btrfs and xfs flush and wait on the destination's dirty block at every copy_file_range
    // call, even when they then cannot reflink: there it only pays at aligned offsets.
    t.alignedOnly = sf.f_type == BTRFS_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC;
    if (sf.f_bsize > 0) t.block = sf.f_bsize;
  }
  return t;
}

static bool FallbackErrno(int e) {
  return e == EXDEV || e == ENOSYS || e == EOPNOTSUPP || e == EINVAL || e == EPERM || e == EIO || e == EBADF;
}

uint64_t ReadFull(int fd, int64_t off, char* dst, uint64_t len) {
  uint64_t got = 0;
  while (got < len) {
    ssize_t n = off >= 0 ? pread(fd, dst + got, len - got, off + static_cast<int64_t>(got)) : read(fd, dst + got, len - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        usleep(1000);  // a non-blocking pipe with nothing yet
        continue;
      }
      Fail(errno, off >= 0 ? "pread" : "read");
    }
    if (n == 0) break;
    got += static_cast<uint64_t>(n);
  }
  return got;
}

void WriteFull(int fd, int64_t off, const char* src, uint64_t len) {
  uint64_t put = 0;
  while (put < len) {
    ssize_t n = off >= 0 ? pwrite(fd, src + put, len - put, off + static_cast<int64_t>(put)) : write(fd, src + put, len - put);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        usleep(1000);
        continue;
      }
      Fail(errno, off >= 0 ? "pwrite" : "write");
    }
    put += static_cast<uint64_t>(n);
  }
}

static bool IsPipe(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

uint64_t CopyRange(int in, int64_t inOff, int out, int64_t outOff, uint64_t len, Method want, const CopyTarget& tgt,
                   std::vector<char>& buf, CopyStats& stats, Sha256* hash) {
  Method m = want;
  if (hash) {
    m = kReadWrite;
  } else if (m == kAuto || m == kFiclone) {
    if (inOff < 0 && IsPipe(in)) m = kSplice;
    else if (tgt.outIsStream || outOff < 0) m = kSendfile;
    else if (tgt.alignedOnly && ((inOff % tgt.block) != 0 || (outOff % tgt.block) != 0)) m = kReadWrite;
    else m = kCopyFileRange;
  }
  uint64_t done = 0;
  bool first = true;
  const size_t kChunk = 1 << 30;
  while (done < len) {
    size_t want_n = static_cast<size_t>(std::min<uint64_t>(len - done, kChunk));
    ssize_t n = -1;
    loff_t io = inOff + static_cast<int64_t>(done), oo = outOff + static_cast<int64_t>(done);
    switch (m) {
      case kCopyFileRange:
        n = copy_file_range(in, inOff >= 0 ? &io : nullptr, out, outOff >= 0 ? &oo : nullptr, want_n, 0);
        break;
      case kSendfile:
        if (outOff >= 0) {  // sendfile writes at the output's position: no offsets there
          m = kReadWrite;
          continue;
        }
        n = sendfile(out, in, inOff >= 0 ? &io : nullptr, want_n);
        break;
      case kSplice:
        n = splice(in, inOff >= 0 ? &io : nullptr, out, outOff >= 0 ? &oo : nullptr, want_n, SPLICE_F_MOVE);
        break;
      default: {
        if (buf.size() < (1u << 20)) buf.resize(1 << 20);
        size_t chunk = static_cast<size_t>(std::min<uint64_t>(len - done, buf.size()));
        uint64_t r = ReadFull(in, inOff >= 0 ? io : -1, buf.data(), chunk);
        if (r == 0) return done;
        if (hash) hash->Update(buf.data(), r);
        WriteFull(out, outOff >= 0 ? oo : -1, buf.data(), r);
        stats.bytes[kReadWrite] += r;
        done += r;
        if (r < chunk) return done;
        continue;
      }
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        usleep(1000);
        continue;
      }
      if (FallbackErrno(errno)) {
        m = (m == kCopyFileRange && outOff < 0) ? kSendfile : kReadWrite;
        continue;
      }
      Fail(errno, m == kCopyFileRange ? "copy_file_range" : m == kSendfile ? "sendfile" : "splice");
    }
    if (n == 0) {
      // some filesystems answer 0 where they cannot do it: let the buffered path decide whether this is EOF
      if (first && m != kReadWrite) {
        m = kReadWrite;
        continue;
      }
      return done;
    }
    first = false;
    stats.bytes[m] += static_cast<uint64_t>(n);
    done += static_cast<uint64_t>(n);
  }
  return done;
}

}  // namespace layers
