#include "copy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cancel.h"
#include "fsops.h"
#include "hash.h"
#include "js.h"

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

static bool IsPipe(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
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
    if (sf.f_type == BTRFS_SUPER_MAGIC) t.minClone = kMinCloneBtrfs;
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

// The next method to try when `m` cannot do this copy: copy_file_range -> splice (input pipe)
// or sendfile (output at its position: pipe, socket, O_APPEND) -> read/write.
static Method Fallback(Method m, bool inPipe, int64_t outOff) {
  if (m == kCopyFileRange && inPipe) return kSplice;
  if (m == kCopyFileRange && outOff < 0) return kSendfile;
  return kReadWrite;
}

// Every byte of the range, holes read as zeros: CopyRange without the hole walk.
static uint64_t CopyBytes(int in, int64_t inOff, int out, int64_t outOff, uint64_t len, Method want, const CopyTarget& tgt,
                          std::vector<char>& buf, CopyStats& stats, Sha256* hash) {
  bool inPipe = inOff < 0 && IsPipe(in);
  Method m = want;
  if (hash) {
    m = kReadWrite;  // the bytes must pass through this process to be hashed
  } else if (m == kAuto || m == kFiclone) {
    if (inPipe) m = kSplice;
    else if (tgt.outIsStream || outOff < 0) m = kSendfile;
    else if (tgt.alignedOnly && ((inOff % tgt.block) != 0 || (outOff % tgt.block) != 0 || len < tgt.minClone)) m = kReadWrite;
    else m = kCopyFileRange;
  }
  uint64_t done = 0;
  bool first = true;  // no bytes moved by the current method yet
  // cancel() is checked between chunks (the caller names the file): SIGINT/SIGTERM stop a
  // multi-GiB body within one chunk, 64 MiB in the kernel or 1 MiB through the buffer (docs/cli.md, "Signals")
  const size_t kChunk = 64 << 20;
  while (done < len) {
    CheckCancel("");
    size_t want_n = static_cast<size_t>(std::min<uint64_t>(len - done, kChunk));
    ssize_t n = -1;
    loff_t io = inOff + static_cast<int64_t>(done), oo = outOff + static_cast<int64_t>(done);
    switch (m) {
      case kCopyFileRange:
        n = copy_file_range(in, inOff >= 0 ? &io : nullptr, out, outOff >= 0 ? &oo : nullptr, want_n, 0);
        break;
      case kSendfile:
        if (outOff >= 0) {  // sendfile writes at the output's position: it cannot take an offset
          m = kReadWrite;
          continue;
        }
        n = sendfile(out, in, inOff >= 0 ? &io : nullptr, want_n);
        break;
      case kSplice:
        n = splice(in, inOff >= 0 ? &io : nullptr, out, outOff >= 0 ? &oo : nullptr, want_n, SPLICE_F_MOVE);
        break;
      default: {
        if (buf.size() < kBufferSize) buf.resize(kBufferSize);
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
      if (errno == EAGAIN) {  // a non-blocking pipe or socket that is full or empty for now
        usleep(1000);
        continue;
      }
      if (FallbackErrno(errno)) {
        m = Fallback(m, inPipe, outOff);
        continue;
      }
      Fail(errno, m == kCopyFileRange ? "copy_file_range" : m == kSendfile ? "sendfile" : "splice");
    }
    if (n == 0) {
      // some filesystems answer 0 where they cannot do the copy: let the next method decide
      // whether this really is the end of the input
      if (first) {
        m = Fallback(m, inPipe, outOff);
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

bool NextData(int fd, uint64_t at, uint64_t end, uint64_t& data, uint64_t& stop, const std::string& path) {
  if (at >= end) return false;
  off_t d = lseek(fd, static_cast<off_t>(at), SEEK_DATA);
  if (d < 0) {
    if (errno == ENXIO) return false;  // nothing but hole up to the end of the file
    Fail(errno, "lseek(SEEK_DATA)", path);
  }
  if (static_cast<uint64_t>(d) >= end) return false;
  off_t h = lseek(fd, d, SEEK_HOLE);
  if (h < 0) Fail(errno, "lseek(SEEK_HOLE)", path);
  data = static_cast<uint64_t>(d);
  stop = std::min<uint64_t>(static_cast<uint64_t>(h), end);
  return true;
}

// Where the range [inOff, inOff+len) of `in` has a hole, and the target range lies wholly past
// the end of `out` (so what is not written there reads as zeros), copy only the source's data
// ranges, each at its offset through CopyBytes, and extend `out` to the range's end so a
// trailing hole stays a hole: a copy of a 1 GiB file holding 4 KiB of data writes 4 KiB where
// copy_file_range cannot reflink (ext4). Returns false, having moved nothing, when that does
// not apply (no hole, not a file, the filesystem cannot tell): the caller copies every byte.
// SEEK_DATA/SEEK_HOLE move the file position: it is put back, as the caller gave an offset.
static bool CopyDataRanges(int in, int64_t inOff, int out, int64_t outOff, uint64_t len, Method want,
                           const CopyTarget& tgt, std::vector<char>& buf, CopyStats& stats, uint64_t& done) {
  off_t was = lseek(in, 0, SEEK_CUR);
  if (was < 0) return false;
  struct Restore {
    int fd;
    off_t pos;
    ~Restore() { lseek(fd, pos, SEEK_SET); }
  } restore{in, was};
  off_t hole = lseek(in, inOff, SEEK_HOLE);
  if (hole < 0 || static_cast<uint64_t>(hole) >= static_cast<uint64_t>(inOff) + len) return false;
  struct stat ist, ost;
  if (fstat(in, &ist) != 0 || !S_ISREG(ist.st_mode) || fstat(out, &ost) != 0 || !S_ISREG(ost.st_mode) || ost.st_size > outOff)
    return false;
  // the source's end bounds the copy, as in CopyBytes: fewer than len only when the input ended
  uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(inOff) + len, static_cast<uint64_t>(ist.st_size));
  uint64_t pos = static_cast<uint64_t>(inOff);
  uint64_t data, stop;
  while (NextData(in, pos, end, data, stop)) {
    uint64_t n = stop - data;
    uint64_t got = CopyBytes(in, static_cast<int64_t>(data), out, outOff + static_cast<int64_t>(data - inOff), n, want, tgt, buf,
                             stats, nullptr);
    if (got < n) {  // the source shrank while it was copied
      done = data + got - static_cast<uint64_t>(inOff);
      return true;
    }
    pos = stop;
  }
  done = end - static_cast<uint64_t>(inOff);
  off_t want_size = static_cast<off_t>(outOff + static_cast<int64_t>(done));
  if (fstat(out, &ost) != 0) Fail(errno, "fstat");
  if (ost.st_size < want_size && ftruncate(out, want_size) != 0) Fail(errno, "ftruncate");
  return true;
}

uint64_t CopyRange(int in, int64_t inOff, int out, int64_t outOff, uint64_t len, Method want, const CopyTarget& tgt,
                   std::vector<char>& buf, CopyStats& stats, Sha256* hash) {
  uint64_t done = 0;
  if (!hash && inOff >= 0 && outOff >= 0 && !tgt.outIsStream && len >= kMinHoleScan &&
      CopyDataRanges(in, inOff, out, outOff, len, want, tgt, buf, stats, done))
    return done;
  return CopyBytes(in, inOff, out, outOff, len, want, tgt, buf, stats, hash);
}

namespace {

Napi::Value CopyRangeJs(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    int in = IntArg(info, 0), out = IntArg(info, 2);
    Method m = info.Length() > 5 && info[5].IsString() ? ParseMethod(StrArg(info, 5).c_str()) : kAuto;
    CopyTarget t = ProbeTarget(out);
    std::vector<char> buf;
    CopyStats s;
    uint64_t n = CopyRange(in, I64Arg(info, 1), out, I64Arg(info, 3), static_cast<uint64_t>(I64Arg(info, 4)), m, t, buf, s);
    int used = kReadWrite;  // what an empty copy reports
    for (int i = 0; i < kMethods; i++)
      if (s.bytes[i] > s.bytes[used]) used = i;
    Napi::Object r = Napi::Object::New(info.Env());
    r.Set("bytes", Napi::Number::New(info.Env(), static_cast<double>(n)));
    r.Set("method", kMethodNames[used]);
    return r;
  });
}

Napi::Value Ficlone(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&]() -> Napi::Value {
    if (ioctl(IntArg(info, 1), FICLONE, IntArg(info, 0)) != 0) Fail(errno, "ioctl(FICLONE)");
    return info.Env().Undefined();
  });
}

}  // namespace

void InitCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyRange", Napi::Function::New(env, CopyRangeJs, "copyRange"));
  exports.Set("ficlone", Napi::Function::New(env, Ficlone, "ficlone"));
}

}  // namespace layers
