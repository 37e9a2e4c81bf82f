// writeSegments: write a tar from header byte ranges and file bodies (see TarSegment in
// lib/native.ts). Headers, padding and small bodies are coalesced into ~1 MiB writes. On btrfs
// and xfs the block-aligned bulk of each body whose tar offset is block-aligned is left as a
// hole in a first pass and cloned with copy_file_range in a second, so the two never interleave
// (interleaving makes every clone wait on writeback of the block just written).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "batch.h"
#include "cancel.h"
#include "copy.h"
#include "crc64.h"
#include "errors.h"
#include "names.h"
#include "resolve.h"

namespace layers {
namespace {

constexpr size_t kCoalesce = 1 << 20;
constexpr uint64_t kSmallBody = 64 << 10;  // read into the coalescing buffer rather than copied on its own
constexpr size_t kMaxDeferred = 1024;      // open fds held for the clone pass
// A deferred clone splits the coalesced buffer around a hole (one more flush and write) and adds
// a clone call: for bodies under this it costs more than it saves on any filesystem (xfs: a tar
// of 50 000 ~21 KB files took 1070 ms with the ~5 % aligned ones cloned, 675 ms without).
constexpr uint64_t kMinDeferredClone = 64 << 10;

// The coalescing buffer: filled from the front and written out whole. Unlike a std::vector<char>
// it does not zero the bytes a read is about to overwrite (a memset of every byte of the tar),
// and each worker thread keeps its own across batches instead of faulting in a new one each time.
class Coalescer {
 public:
  Coalescer() {
    thread_local std::unique_ptr<char[]> block;
    if (!block) block.reset(new char[kCoalesce]);
    p_ = block.get();
  }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  char* data() { return p_; }
  void clear() { n_ = 0; }
  // n more bytes at the end, left as they are for the caller to fill
  char* grow(size_t n) {
    char* at = p_ + n_;
    n_ += n;
    return at;
  }
  void append(const char* src, size_t n) { std::memcpy(grow(n), src, n); }

 private:
  char* p_;
  size_t n_ = 0;
};

// A range of a file's bytes: the whole body, or one data range of a sparse file.
struct Range {
  uint64_t offset, length;
};

struct Segment {
  bool isFile = false;
  uint64_t offset = 0, length = 0;  // bytes segment: range in data
  std::string path;
  int fd = -1;
  uint64_t size = 0;
  std::vector<Range> ranges;  // what of the file the body holds, in order: [{0, size}] unless sparse
  bool sparse = false;
  // tar-split reassembly (lib/tar/tar-split.ts, assembleTar): the file must have exactly `size`
  // bytes, and, when it is to be verified, this CRC-64 (Go's crc64.ISO, as the record has it)
  bool exact = false;
  bool hasCrc = false;
  uint64_t crc = 0;
};

// A block-aligned bulk left as a hole in the first pass, cloned in the second.
struct Deferred {
  int fd;
  int64_t src, dst;
  uint64_t len;
  std::string path;
};

class Writer {
 public:
  // verifyAfterNs: the CRC-64 of an `exact` body is checked when its file's ctime (ns) is later
  // than this (0: always; negative: never)
  Writer(int out, const char* data, int rootFd, int64_t outOffset, Method method, int64_t verifyAfterNs = -1)
      : out_(out), data_(data), parents_(rootFd), method_(method), verifyAfterNs_(verifyAfterNs) {
    tgt_ = ProbeTarget(out);
    if (!tgt_.outIsStream && outOffset < 0) {
      // "at the fd's position": use it as the base for positional writes, unless O_APPEND
      // (pwrite would ignore our offsets) makes sequential writes the only right way
      int fl = fcntl(out, F_GETFL);
      if (fl >= 0 && !(fl & O_APPEND)) {
        off_t p = lseek(out, 0, SEEK_CUR);
        if (p >= 0) {
          base_ = p;
          restorePos_ = true;
        }
      }
    } else if (!tgt_.outIsStream) {
      base_ = outOffset;
    }
    positional_ = base_ >= 0;
    twoPass_ = positional_ && tgt_.alignedOnly && (method_ == kAuto || method_ == kCopyFileRange);
  }

  ~Writer() { CloseHeld(); }

  void Write(const std::vector<Segment>& segs) {
    for (size_t i = 0; i < segs.size(); i++) {
      try {
        const Segment& s = segs[i];
        if (s.isFile) {
          CheckCancel(s.path);
          File(s);
        }
        else Append(data_ + s.offset, s.length);
      } catch (SysError& e) {
        e.index = static_cast<long>(i);
        if (e.path.empty() && segs[i].isFile) e.path = segs[i].path;
        throw;
      }
    }
    Flush();
    Clone();
    if (restorePos_) lseek(out_, base_ + static_cast<int64_t>(pos_), SEEK_SET);
  }

  CopyStats stats;
  uint64_t written() const { return pos_; }

 private:
  int64_t At(uint64_t rel) const { return positional_ ? base_ + static_cast<int64_t>(rel) : -1; }

  void Append(const char* p, uint64_t n) {
    while (n > 0) {
      size_t room = kCoalesce - buf_.size();
      if (room == 0) {
        Flush();
        continue;
      }
      size_t take = static_cast<size_t>(std::min<uint64_t>(room, n));
      buf_.append(p, take);
      p += take;
      n -= take;
    }
  }

  void Flush() {
    if (buf_.empty()) return;
    WriteFull(out_, At(bufStart_), buf_.data(), buf_.size());
    bufStart_ += buf_.size();
    pos_ = bufStart_;
    buf_.clear();
  }

  // body bytes into the coalescing buffer (counted as the read/write path)
  void AppendFrom(int fd, int64_t off, uint64_t n, const std::string& path) {
    while (n > 0) {
      if (buf_.size() == kCoalesce) Flush();
      size_t take = static_cast<size_t>(std::min<uint64_t>(kCoalesce - buf_.size(), n));
      uint64_t got = ReadFull(fd, off, buf_.grow(take), take);
      if (got < take) Shrank(path, static_cast<uint64_t>(off) + got);
      stats.bytes[kReadWrite] += take;
      off += static_cast<int64_t>(take);
      n -= take;
    }
  }

  [[noreturn]] void Shrank(const std::string& path, uint64_t has) {
    FailWith("ESHRANK", ENODATA, "read", path,
             "the file is shorter than when it was listed (it ends at byte " + std::to_string(has) + ")");
  }

  void File(const Segment& s) {
    bool owned = s.fd < 0;
    // the parent is resolved beneath the root once per directory (consecutive bodies share it);
    // the file itself is opened without following a symlink, and without blocking: what is there
    // now may not be the regular file the walk listed (a FIFO put in its place would block the
    // open, and the store lock with it, for ever), so it must still be a regular file
    int fd = s.fd;
    if (owned) {
      std::string base;
      int dir = parents_.Parent(s.path, base);
      fd = openat(dir, base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) Fail(errno, "openat", s.path);
      struct stat st;
      if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        Fail(err, "fstat", s.path);
      }
      if (!S_ISREG(st.st_mode)) {
        close(fd);
        FailWith("ENOTREG", EINVAL, "open", s.path, "not a regular file any more (changed since it was listed)");
      }
      if (s.exact) {
        try {
          CheckRecorded(fd, st, s);
        } catch (...) {
          close(fd);
          throw;
        }
      }
    }
    size_t deferredBefore = deferred_.size();
    try {
      // A file that shrank is found by the copy itself (a short read). Checked first only where
      // that comes too late or says too little: a sparse map (later ranges may lie past the end)
      // and a body whose bulk may be deferred to the clone pass (the error must name the segment).
      if (s.sparse || (twoPass_ && s.size >= std::max(tgt_.minClone, kMinDeferredClone))) {
        struct stat st;
        if (fstat(fd, &st) != 0) Fail(errno, "fstat", s.path);
        for (const Range& r : s.ranges)
          if (static_cast<uint64_t>(st.st_size) < r.offset + r.length) Shrank(s.path, static_cast<uint64_t>(st.st_size));
      }
      for (const Range& r : s.ranges) Body(fd, r, s.path);
    } catch (...) {
      if (owned && deferred_.size() == deferredBefore) close(fd);
      else if (owned) held_.push_back(fd);
      throw;
    }
    if (!owned) return;
    if (deferred_.size() == deferredBefore) {
      close(fd);
      return;
    }
    held_.push_back(fd);  // until its bulk is cloned
    if (held_.size() >= kMaxDeferred) {
      Flush();
      Clone();
    }
  }

  // A body of a tar-split record (docs/tar-engine.md, "tar-split records"): the size from the
  // fstat the open needs anyway; the CRC-64 only for a file whose inode changed after the record
  // was written (one more read of the body, so not for the others).
  void CheckRecorded(int fd, const struct stat& st, const Segment& s) {
    if (static_cast<uint64_t>(st.st_size) != s.size)
      FailWith("ELAYERCHANGED", EIO, "fstat", s.path,
               "has " + std::to_string(st.st_size) + " bytes, the record says " + std::to_string(s.size));
    if (verifyAfterNs_ < 0) return;
    int64_t ctime = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    if (ctime <= verifyAfterNs_) return;
    if (copyBuf_.size() < kCoalesce) copyBuf_.resize(kCoalesce);
    uint64_t crc = 0, off = 0;
    while (off < s.size) {
      size_t take = static_cast<size_t>(std::min<uint64_t>(copyBuf_.size(), s.size - off));
      uint64_t got = ReadFull(fd, static_cast<int64_t>(off), copyBuf_.data(), take);
      if (got < take) Shrank(s.path, off + got);
      crc = Crc64Update(crc, copyBuf_.data(), take);
      off += take;
    }
    if (!s.hasCrc || crc != s.crc)
      FailWith("ELAYERCHANGED", EIO, "read", s.path, "has the recorded size but not the recorded content (CRC-64 differs)");
  }

  // One range of a file into the tar at the current offset.
  void Body(int fd, const Range& r, const std::string& path) {
    uint64_t here = bufStart_ + buf_.size();  // tar offset of these bytes
    int64_t src = static_cast<int64_t>(r.offset);
    if (twoPass_) {
      bool aligned = At(here) % tgt_.block == 0 && src % tgt_.block == 0 && r.length >= std::max(tgt_.minClone, kMinDeferredClone);
      uint64_t bulk = aligned ? r.length - r.length % static_cast<uint64_t>(tgt_.block) : 0;
      if (bulk == 0) return AppendFrom(fd, src, r.length, path);
      // leave a hole for the bulk; write the tail after it in this pass
      Flush();
      deferred_.push_back({fd, src, At(here), bulk, path});
      bufStart_ = here + bulk;
      pos_ = bufStart_;
      AppendFrom(fd, src + static_cast<int64_t>(bulk), r.length - bulk, path);
    } else if (r.length <= kSmallBody && method_ == kAuto) {
      AppendFrom(fd, src, r.length, path);
    } else {
      Flush();
      uint64_t got = CopyRange(fd, src, out_, At(here), r.length, method_, tgt_, copyBuf_, stats);
      if (got < r.length) Shrank(path, r.offset + got);
      bufStart_ = here + r.length;
      pos_ = bufStart_;
    }
  }

  void Clone() {
    for (const auto& d : deferred_) {
      uint64_t got = CopyRange(d.fd, d.src, out_, d.dst, d.len, kCopyFileRange, tgt_, copyBuf_, stats);
      if (got < d.len) Shrank(d.path, static_cast<uint64_t>(d.src) + got);
    }
    deferred_.clear();
    CloseHeld();
  }

  void CloseHeld() {
    for (int fd : held_) close(fd);
    held_.clear();
  }

  int out_;
  const char* data_;
  ParentCache parents_;
  Method method_;
  int64_t verifyAfterNs_;
  CopyTarget tgt_;
  int64_t base_ = -1;
  bool positional_ = false, twoPass_ = false, restorePos_ = false;
  uint64_t bufStart_ = 0;  // tar offset where buf_ starts
  uint64_t pos_ = 0;       // tar bytes written or planned so far
  Coalescer buf_;
  std::vector<char> copyBuf_;
  std::vector<Deferred> deferred_;
  std::vector<int> held_;  // fds we opened that deferred_ still reads
};

struct Job {
  int out, root;
  int64_t outOffset;
  int64_t verifyAfterNs = -1;
  Method method;
  std::vector<Segment> segs;
};

// Runs on the JS thread while no batch is being written, so it is on the critical path: the
// property names are made once per call, and a segment's kind is read without a std::string.
Job ParseJob(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Job j;
  j.out = info[0].As<Napi::Number>().Int32Value();
  Napi::Object opts = info[3].As<Napi::Object>();
  j.root = opts.Get("rootFd").As<Napi::Number>().Int32Value();
  j.outOffset = opts.Get("outOffset").As<Napi::Number>().Int64Value();
  Napi::Value m = opts.Get("method");
  j.method = m.IsString() ? ParseMethod(m.As<Napi::String>().Utf8Value().c_str()) : kAuto;
  Napi::Value va = opts.Get("verifyAfterNs");
  if (va.IsBigInt()) {
    bool lossless;
    j.verifyAfterNs = va.As<Napi::BigInt>().Int64Value(&lossless);
  } else if (va.IsNumber()) {
    j.verifyAfterNs = va.As<Napi::Number>().Int64Value();
  }
  size_t dataLen = info[1].As<Napi::Buffer<char>>().Length();
  Napi::Array a = info[2].As<Napi::Array>();
  Napi::String kKind = Napi::String::New(env, "kind"), kOffset = Napi::String::New(env, "offset"),
               kLength = Napi::String::New(env, "length"), kPath = Napi::String::New(env, "path"),
               kFd = Napi::String::New(env, "fd"), kSize = Napi::String::New(env, "size"), kSparse = Napi::String::New(env, "sparse"),
               kExact = Napi::String::New(env, "exact"), kCrc = Napi::String::New(env, "crc");
  auto u64 = [](Napi::Value v) { return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value()); };
  uint32_t n = a.Length();
  j.segs.reserve(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    Segment s;
    char kind[8] = {};
    size_t kindLen = 0;
    Napi::Value kv = o.Get(kKind);
    if (!kv.IsString() || napi_get_value_string_utf8(env, kv, kind, sizeof kind, &kindLen) != napi_ok) kindLen = 0;
    std::string_view k(kind, kindLen);
    if (k == "bytes") {
      s.offset = u64(o.Get(kOffset));
      s.length = u64(o.Get(kLength));
      if (s.offset + s.length > dataLen) throw Napi::RangeError::New(env, "writeSegments: bytes segment past the end of data");
    } else if (k == "file") {
      s.isFile = true;
      s.path = NameFromJs(o.Get(kPath));
      Napi::Value fd = o.Get(kFd);
      if (fd.IsNumber()) s.fd = fd.As<Napi::Number>().Int32Value();
      s.size = u64(o.Get(kSize));
      s.exact = o.Get(kExact).ToBoolean().Value();
      if (s.exact) {
        Napi::Value c = o.Get(kCrc);
        if (c.IsBuffer() && c.As<Napi::Buffer<uint8_t>>().Length() == 8) {
          const uint8_t* b = c.As<Napi::Buffer<uint8_t>>().Data();
          for (int k = 0; k < 8; k++) s.crc = (s.crc << 8) | b[k];  // big-endian, as Go's Sum64 bytes
          s.hasCrc = true;
        }
      }
      Napi::Value sp = o.Get(kSparse);
      if (sp.IsArray()) {
        Napi::Array m = sp.As<Napi::Array>();
        uint64_t total = 0;
        for (uint32_t k = 0; k < m.Length(); k++) {
          Napi::Object r = m.Get(k).As<Napi::Object>();
          Range range{u64(r.Get(kOffset)), u64(r.Get(kLength))};
          total += range.length;
          if (range.length) s.ranges.push_back(range);
        }
        s.sparse = true;
        if (total != s.size)
          throw Napi::RangeError::New(env, "writeSegments: the sparse map of '" + s.path + "' holds " + std::to_string(total) +
                                               " bytes, not its size " + std::to_string(s.size));
      } else if (s.size > 0) {
        s.ranges.push_back({0, s.size});
      }
    } else {
      std::string shown = kv.IsString() ? kv.As<Napi::String>().Utf8Value() : std::string("(not a string)");
      throw Napi::TypeError::New(env, "writeSegments: unknown segment kind '" + shown + "'");
    }
    j.segs.push_back(std::move(s));
  }
  return j;
}

class WriteWorker : public Napi::AsyncWorker {
 public:
  WriteWorker(Napi::Env env, Job job, Napi::Buffer<char> data)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)), data_(data.Data()) {
    keep_ = Napi::Persistent(data.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      Writer w(job_.out, data_, job_.root, job_.outOffset, job_.method, job_.verifyAfterNs);
      w.Write(job_.segs);
      stats_ = w.stats;
      written_ = w.written();
    } catch (const SysError& e) {
      err_ = e;
      SetError(e.syscall);  // OnError rejects with err_, not this
    }
  }
  void OnOK() override {
    keep_.Reset();
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    Napi::Object b = Napi::Object::New(env);
    for (int i = 0; i < kMethods; i++)
      if (stats_.bytes[i]) b.Set(kMethodNames[i], Napi::Number::New(env, static_cast<double>(stats_.bytes[i])));
    r.Set("bytes", b);
    r.Set("written", Napi::Number::New(env, static_cast<double>(written_)));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error&) override {
    keep_.Reset();
    deferred_.Reject(ToJsError(Env(), err_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  const char* data_;
  Napi::ObjectReference keep_;
  CopyStats stats_;
  uint64_t written_ = 0;
  SysError err_;
};

Napi::Value WriteSegments(const Napi::CallbackInfo& info) {
  Job job = ParseJob(info);
  auto* w = new WriteWorker(info.Env(), std::move(job), info[1].As<Napi::Buffer<char>>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitWriteSegments(Napi::Env env, Napi::Object exports) {
  exports.Set("writeSegments", Napi::Function::New(env, WriteSegments, "writeSegments"));
}

}  // namespace layers
