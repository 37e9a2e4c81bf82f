// zstd decompression with the system libzstd (libzstd.so.1, binding.gyp), on a worker
// thread: a layer's zstd input is read (a file at an offset, or a pipe as it comes), hashed
// (its compressed digest) and inflated into the output fd in one pass, in fixed 1 MiB buffers,
// so memory stays flat and no byte crosses into JS (docs/tar-engine.md, "Compression").
#include <napi.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "hash.h"

namespace layers {
namespace {

class ZstdWorker : public Napi::AsyncWorker {
 public:
  ZstdWorker(Napi::Env env, int in, int64_t inOffset, int out, Napi::Buffer<uint8_t> prefix, Napi::Object hashObj, Sha256* hash,
             Napi::Float64Array progress)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        in_(in),
        inOffset_(inOffset),
        out_(out),
        prefix_(prefix.Data(), prefix.Data() + prefix.Length()),
        hash_(hash),
        progress_(progress.Data()) {
    hashRef_ = Napi::Persistent(hashObj);
    progressRef_ = Napi::Persistent(progress);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      Run();
    } catch (const SysError& e) {
      err_ = e;
      SetError(e.syscall);  // OnError rejects with err_
    }
  }

  void OnOK() override {
    Release();
    Napi::Object r = Napi::Object::New(Env());
    r.Set("read", Napi::Number::New(Env(), static_cast<double>(read_)));
    r.Set("written", Napi::Number::New(Env(), static_cast<double>(written_)));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error&) override {
    Release();
    deferred_.Reject(ToJsError(Env(), err_).Value());
  }

 private:
  struct DCtx {
    ZSTD_DCtx* p = ZSTD_createDCtx();
    ~DCtx() { ZSTD_freeDCtx(p); }
  };

  void Release() {
    hashRef_.Reset();
    progressRef_.Reset();
  }

  // the next input bytes into buf: the prefix (bytes the caller read to see the magic) first
  size_t ReadInput(std::vector<char>& buf) {
    if (!prefix_.empty()) {
      size_t n = prefix_.size();
      memcpy(buf.data(), prefix_.data(), n);
      prefix_.clear();
      return n;
    }
    for (;;) {
      ssize_t n = inOffset_ >= 0 ? pread(in_, buf.data(), buf.size(), inOffset_) : read(in_, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) Fail(errno, inOffset_ >= 0 ? "pread" : "read");
      if (inOffset_ >= 0) inOffset_ += n;
      return static_cast<size_t>(n);
    }
  }

  void WriteAll(const char* p, size_t n) {
    while (n > 0) {
      ssize_t w = write(out_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) Fail(errno, "write");
      p += w;
      n -= static_cast<size_t>(w);
      written_ += w;
    }
  }

  static void Bad(const std::string& why) { FailWith("ECOMPRESSION", EINVAL, "zstd", "", "bad zstd data: " + why); }

  void Run() {
    DCtx d;
    if (!d.p) Fail(ENOMEM, "ZSTD_createDCtx");
    std::vector<char> in(1 << 20), out(ZSTD_DStreamOutSize() * 8);
    size_t pending = 0;  // what the last ZSTD_decompressStream still wanted: 0 at the end of a frame
    bool any = false;
    for (;;) {
      size_t n = ReadInput(in);
      if (n == 0) break;
      any = true;
      hash_->Update(in.data(), n);
      read_ += n;
      progress_[0] = static_cast<double>(read_);
      ZSTD_inBuffer ib = {in.data(), n, 0};
      // decompress until the input is used up and the output buffer was not filled (nothing held back)
      bool full = true;
      while (ib.pos < ib.size || full) {
        ZSTD_outBuffer ob = {out.data(), out.size(), 0};
        pending = ZSTD_decompressStream(d.p, &ob, &ib);
        if (ZSTD_isError(pending)) Bad(ZSTD_getErrorName(pending));
        WriteAll(out.data(), ob.pos);
        full = ob.pos == ob.size;
      }
    }
    if (!any) Bad("unexpected EOF (no input)");
    if (pending != 0) Bad("unexpected EOF (the input ends inside a frame)");
  }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference hashRef_;
  Napi::Reference<Napi::Float64Array> progressRef_;
  int in_;
  int64_t inOffset_;
  int out_;
  std::vector<char> prefix_;
  Sha256* hash_;
  double* progress_;
  int64_t read_ = 0, written_ = 0;
  SysError err_;
};

// zstdDecompress(inFd, inOffset, outFd, prefix, hash, progress)
Napi::Value ZstdDecompress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sha256* h = Sha256::Unwrap(info[4]);
  if (!h) throw Napi::TypeError::New(env, "zstdDecompress: hash must come from sha256()");
  if (!info[3].IsBuffer() || !info[5].IsTypedArray()) throw Napi::TypeError::New(env, "zstdDecompress(inFd, inOffset, outFd, prefix, hash, progress)");
  auto* w = new ZstdWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int32Value(),
                           info[3].As<Napi::Buffer<uint8_t>>(), info[4].As<Napi::Object>(), h, info[5].As<Napi::Float64Array>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitZstd(Napi::Env env, Napi::Object exports) {
  exports.Set("zstdDecompress", Napi::Function::New(env, ZstdDecompress, "zstdDecompress"));
  exports.Set("zstdVersion", Napi::String::New(env, ZSTD_versionString()));
}

}  // namespace layers
