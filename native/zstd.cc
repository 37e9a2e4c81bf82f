// zstd with the system libzstd (libzstd.so.1, binding.gyp), on worker threads, in fixed 1 MiB
// buffers, so memory stays flat and no byte crosses into JS (docs/tar-engine.md, "Compression"):
// - zstdDecompress: a layer's zstd input is read (a file at an offset, or a pipe as it comes),
//   hashed (its compressed digest) and inflated into the output fd in one pass;
// - zstdCompress: a file (a diff's tar) compressed into the output fd (a file or a pipe).
// Both stop before their next chunk (in or out) once cancel() was called (cancel.h) or the caller's abort
// flag (an Int32Array, set by JS when its AbortSignal fires) is non-zero: ECANCELED.
#include <napi.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "cancel.h"
#include "copy.h"
#include "errors.h"
#include "hash.h"

namespace layers {
namespace {

constexpr size_t CHUNK = 1 << 20;

// What both directions share: the promise, the input and output fds, the abort flag, counts.
class ZstdWorker : public Napi::AsyncWorker {
 public:
  ZstdWorker(Napi::Env env, int in, int64_t inOffset, int out, Napi::Value abort)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), in_(in), inOffset_(inOffset), out_(out) {
    if (abort.IsTypedArray() && abort.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
      abortRef_ = Napi::Persistent(abort.As<Napi::Int32Array>());
      abort_ = abort.As<Napi::Int32Array>().Data();
    }
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

 protected:
  virtual void Run() = 0;
  virtual void Release() { abortRef_.Reset(); }

  // between chunks: the process-wide cancel flag, or this call's abort flag
  void CheckStop() {
    if (abort_ && __atomic_load_n(abort_, __ATOMIC_RELAXED) != 0) Fail(ECANCELED, "cancel", "zstd");
    CheckCancel("zstd");
  }

  // the next input bytes into buf (0 at EOF, short only there): the prefix (bytes the caller
  // read to see the magic) first; a non-blocking pipe is waited for (copy.h)
  size_t ReadInput(std::vector<char>& buf) {
    size_t n;
    if (!prefix_.empty()) {
      n = prefix_.size();
      memcpy(buf.data(), prefix_.data(), n);
      prefix_.clear();
    } else {
      n = static_cast<size_t>(ReadFull(in_, inOffset_, buf.data(), buf.size()));
      if (inOffset_ >= 0) inOffset_ += static_cast<int64_t>(n);
    }
    read_ += static_cast<int64_t>(n);
    return n;
  }

  // at the output's position (a file or a pipe, non-blocking ones waited for: copy.h)
  void WriteAll(const char* p, size_t n) {
    WriteFull(out_, -1, p, n);
    written_ += static_cast<int64_t>(n);
  }

  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Int32Array> abortRef_;
  int32_t* abort_ = nullptr;
  int in_;
  int64_t inOffset_;
  int out_;
  std::vector<char> prefix_;
  int64_t read_ = 0, written_ = 0;
  SysError err_;
};

class DecompressWorker : public ZstdWorker {
 public:
  DecompressWorker(Napi::Env env, int in, int64_t inOffset, int out, Napi::Buffer<uint8_t> prefix, Napi::Object hashObj, Sha256* hash,
                   Napi::Float64Array progress, Napi::Value abort)
      : ZstdWorker(env, in, inOffset, out, abort), hash_(hash), progress_(progress.Data()) {
    prefix_.assign(prefix.Data(), prefix.Data() + prefix.Length());
    hashRef_ = Napi::Persistent(hashObj);
    progressRef_ = Napi::Persistent(progress);
  }

 private:
  struct DCtx {
    ZSTD_DCtx* p = ZSTD_createDCtx();
    ~DCtx() { ZSTD_freeDCtx(p); }
  };

  void Release() override {
    ZstdWorker::Release();
    hashRef_.Reset();
    progressRef_.Reset();
  }

  static void Bad(const std::string& why) { FailWith("ECOMPRESSION", EINVAL, "zstd", "", "bad zstd data: " + why); }

  void Run() override {
    DCtx d;
    if (!d.p) Fail(ENOMEM, "ZSTD_createDCtx");
    std::vector<char> in(CHUNK), out(ZSTD_DStreamOutSize() * 8);
    size_t pending = 0;  // what the last ZSTD_decompressStream still wanted: 0 at the end of a frame
    bool any = false;
    for (;;) {
      CheckStop();
      size_t n = ReadInput(in);
      if (n == 0) break;
      any = true;
      hash_->Update(in.data(), n);
      progress_[0] = static_cast<double>(read_);
      ZSTD_inBuffer ib = {in.data(), n, 0};
      // decompress until the input is used up and the output buffer was not filled (nothing held back)
      bool full = true;
      while (ib.pos < ib.size || full) {
        // also between output buffers: 1 MiB of zstd can inflate to gigabytes
        CheckStop();
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

  Napi::ObjectReference hashRef_;
  Napi::Reference<Napi::Float64Array> progressRef_;
  Sha256* hash_;
  double* progress_;
};

class CompressWorker : public ZstdWorker {
 public:
  CompressWorker(Napi::Env env, int in, int out, int level, Napi::Value abort) : ZstdWorker(env, in, 0, out, abort), level_(level) {}

 private:
  struct CCtx {
    ZSTD_CCtx* p = ZSTD_createCCtx();
    ~CCtx() { ZSTD_freeCCtx(p); }
  };

  static void Check(size_t r, const char* what) {
    if (ZSTD_isError(r)) FailWith("ECOMPRESSION", EINVAL, what, "", std::string("zstd compression failed: ") + ZSTD_getErrorName(r));
  }

  void Run() override {
    CCtx c;
    if (!c.p) Fail(ENOMEM, "ZSTD_createCCtx");
    Check(ZSTD_CCtx_setParameter(c.p, ZSTD_c_compressionLevel, level_), "ZSTD_CCtx_setParameter");
    // a checksum in every frame, as the zstd command writes by default
    Check(ZSTD_CCtx_setParameter(c.p, ZSTD_c_checksumFlag, 1), "ZSTD_CCtx_setParameter");
    std::vector<char> in(CHUNK), out(ZSTD_CStreamOutSize() * 8);
    for (;;) {
      CheckStop();
      size_t n = ReadInput(in);
      ZSTD_EndDirective mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
      ZSTD_inBuffer ib = {in.data(), n, 0};
      // feed all of it; at the end, until the frame is flushed (the return value says what is left)
      for (bool more = true; more;) {
        ZSTD_outBuffer ob = {out.data(), out.size(), 0};
        size_t left = ZSTD_compressStream2(c.p, &ob, &ib, mode);
        Check(left, "ZSTD_compressStream2");
        WriteAll(out.data(), ob.pos);
        more = mode == ZSTD_e_end ? left != 0 : ib.pos < ib.size;
      }
      if (n == 0) break;
    }
  }

  int level_;
};

Napi::Promise Queue(ZstdWorker* w) {
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// zstdDecompress(inFd, inOffset, outFd, prefix, hash, progress, abort?)
Napi::Value ZstdDecompress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sha256* h = Sha256::Unwrap(info[4]);
  if (!h) throw Napi::TypeError::New(env, "zstdDecompress: hash must come from sha256()");
  if (!info[3].IsBuffer() || !info[5].IsTypedArray()) throw Napi::TypeError::New(env, "zstdDecompress(inFd, inOffset, outFd, prefix, hash, progress, abort?)");
  return Queue(new DecompressWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int32Value(),
                                    info[3].As<Napi::Buffer<uint8_t>>(), info[4].As<Napi::Object>(), h, info[5].As<Napi::Float64Array>(), info[6]));
}

// zstdCompress(inFd, outFd, level, abort?): inFd read with pread from offset 0 to EOF
Napi::Value ZstdCompress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) throw Napi::TypeError::New(env, "zstdCompress(inFd, outFd, level, abort?)");
  return Queue(new CompressWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(), info[3]));
}

}  // namespace

void InitZstd(Napi::Env env, Napi::Object exports) {
  exports.Set("zstdDecompress", Napi::Function::New(env, ZstdDecompress, "zstdDecompress"));
  exports.Set("zstdCompress", Napi::Function::New(env, ZstdCompress, "zstdCompress"));
  exports.Set("zstdVersion", Napi::String::New(env, ZSTD_versionString()));
}

}  // namespace layers
