// The one copy engine: copy_file_range, then sendfile (output is a pipe or socket) or splice
// (input is a pipe), then a buffered read/write loop; it records which method moved the bytes.
// Used by copyRange, the apply batch and the tar segment writer.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace layers {

class Sha256;

enum Method { kAuto = -1, kFiclone = 0, kCopyFileRange, kSendfile, kSplice, kReadWrite, kMethods };
extern const char* const kMethodNames[kMethods];
Method ParseMethod(const char* s);  // "auto", "copy_file_range", ... ; kAuto when unknown

// The read/write path's buffer: big enough that syscalls cost nothing next to the copying.
constexpr size_t kBufferSize = 1 << 20;

struct CopyStats {
  uint64_t bytes[kMethods] = {};
};

// What is known of the destination, probed once per call or batch.
// Below this, a clone on btrfs costs more than copying the bytes (it waits on writeback of the
// destination first): measured with 50 000 bodies of ~21 KB, the ~5 % that landed aligned and
// were cloned made writing a tar 0.84x GNU tar's speed, 1.14x without them. xfs has no such
// cost: there small clones out of a tar made extraction 1.02x instead of 0.78x, so xfs clones
// every aligned body.
constexpr uint64_t kMinCloneBtrfs = 64 << 10;

struct CopyTarget {
  bool alignedOnly = false;  // btrfs/xfs: copy_file_range only at block-aligned offsets
  uint64_t minClone = 0;     // and only for bodies of at least this many bytes
  int64_t block = 4096;
  bool outIsStream = false;  // pipe, socket or char device: no offsets, sendfile
};

CopyTarget ProbeTarget(int outFd);
bool IsStream(int fd);

// Ranges shorter than this are copied without looking for holes in the source: SEEK_HOLE is a
// syscall per body, and the tar bodies it would cost on (~21 KB on average in the benchmarks)
// can hold little hole; a sparse file smaller than this is at worst written out in full.
constexpr uint64_t kMinHoleScan = 64 << 10;

// Copy `len` bytes from in (at inOff, or its position when -1) to out (at outOff, or its
// position when -1). Returns the bytes copied: fewer than len only when the input ended.
// File to file at offsets, when the target range lies past the target's end, holes in the
// source stay holes in the target (only the data ranges are copied; docs/tar-engine.md).
// `buf` is the caller's reusable buffer for the read/write path. When `hash` is set, every
// byte goes through the read/write path and into the hash. Throws SysError.
uint64_t CopyRange(int in, int64_t inOff, int out, int64_t outOff, uint64_t len, Method want, const CopyTarget& tgt,
                   std::vector<char>& buf, CopyStats& stats, Sha256* hash = nullptr);

// The first data range of fd at or after `at` and before `end` (SEEK_DATA/SEEK_HOLE): false
// when there is only hole up to `end`. Moves the file position. Throws SysError.
bool NextData(int fd, uint64_t at, uint64_t end, uint64_t& data, uint64_t& stop, const std::string& path = "");

// Read exactly len bytes at off (or from the position when -1); returns fewer only at EOF.
uint64_t ReadFull(int fd, int64_t off, char* dst, uint64_t len);
// Write all of len bytes at off (or at the position when -1).
void WriteFull(int fd, int64_t off, const char* src, uint64_t len);

}  // namespace layers
