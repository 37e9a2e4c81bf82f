#include "hash.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "crc64.h"
#include "errors.h"
#include "tar-split.h"

namespace layers {

// The class constructor lives in the env's instance data (not a static), so the addon also
// works when loaded in more than one environment (worker threads).
static Napi::FunctionReference* Ctor(Napi::Env env) { return env.GetInstanceData<Napi::FunctionReference>(); }

Sha256::Sha256(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Sha256>(info) {
  ctx_ = EVP_MD_CTX_new();
  if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) throw Napi::Error::New(info.Env(), "sha256: cannot initialize OpenSSL digest");
}

Sha256::~Sha256() {
  if (ctx_) EVP_MD_CTX_free(ctx_);
}

void Sha256::Update(const void* data, size_t len) {
  if (len) EVP_DigestUpdate(ctx_, data, len);
}

Sha256* Sha256::Unwrap(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(Ctor(v.Env())->Value())) return nullptr;
  return Napi::ObjectWrap<Sha256>::Unwrap(o);
}

Napi::Value Sha256::JsUpdate(const Napi::CallbackInfo& info) {
  if (done_) throw Napi::Error::New(info.Env(), "sha256: update after digest");
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "sha256.update: want a Buffer");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  Update(b.Data(), b.Length());
  return info.Env().Undefined();
}

Napi::Value Sha256::JsDigest(const Napi::CallbackInfo& info) {
  if (done_) throw Napi::Error::New(info.Env(), "sha256: digest called twice");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_, md, &n);
  done_ = true;
  static const char* hex = "0123456789abcdef";
  std::string s = "sha256:";
  for (unsigned i = 0; i < n; i++) {
    s += hex[md[i] >> 4];
    s += hex[md[i] & 15];
  }
  return Napi::String::New(info.Env(), s);
}

namespace {

// The one worker that reads a file range and feeds what it reads to each digest asked for:
// the sha256 (hashRange), the CRC-64 (crc64Range), or the sha256 and the tar-split record of a
// tar (hashTar, tar-split.cc), so every byte is read once whatever is computed from it.
class RangeWorker : public Napi::AsyncWorker {
 public:
  struct Sinks {
    Sha256* hash = nullptr;
    Crc64* crc = nullptr;
    bool tarResult = false;  // hashTar: resolves { size, ... } rather than the size
    int tarSplitFd = -1;     // hashTar: the tar-split record is made and written here
  };
  // owner: the JS object of the digest, kept alive while the worker runs
  RangeWorker(Napi::Env env, int fd, int64_t off, int64_t len, Napi::Object owner, Sinks sinks)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), off_(off), len_(len), sinks_(sinks) {
    ref_ = Napi::Persistent(owner);
    if (sinks.tarSplitFd >= 0) record_ = std::make_unique<TarSplitRecorder>(sinks.tarSplitFd);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    // a short range needs no 1 MiB buffer (crc64Range of one small body)
    std::vector<char> buf(static_cast<size_t>(len_ >= 0 ? std::min<int64_t>(std::max<int64_t>(len_, 1), 1 << 20) : 1 << 20));
    int64_t pos = off_;
    for (;;) {
      size_t want = buf.size();
      if (len_ >= 0) {
        if (done_ >= len_) break;
        want = static_cast<size_t>(std::min<int64_t>(want, len_ - done_));
      }
      ssize_t n = pread(fd_, buf.data(), want, pos);
      if (n < 0) {
        if (errno == EINTR) continue;
        err_.err = errno;
        err_.syscall = "pread";
        SetError(err_.syscall);  // OnError rejects with err_, not this
        return;
      }
      if (n == 0) break;
      if (sinks_.hash) sinks_.hash->Update(buf.data(), static_cast<size_t>(n));
      if (sinks_.crc) sinks_.crc->Update(buf.data(), static_cast<size_t>(n));
      if (record_) record_->Feed(buf.data(), static_cast<size_t>(n));
      pos += n;
      done_ += n;
    }
    if (record_) record_->Finish();
  }
  void OnOK() override {
    ref_.Reset();
    if (!sinks_.tarResult) return deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(done_)));
    Napi::Object r = Napi::Object::New(Env());
    r.Set("size", Napi::Number::New(Env(), static_cast<double>(done_)));
    if (!record_) return deferred_.Resolve(r);
    if (record_->Declined().empty()) {
      r.Set("tarSplit", Napi::Boolean::New(Env(), true));
      r.Set("tarSplitSize", Napi::Number::New(Env(), static_cast<double>(record_->Written())));
      r.Set("entries", Napi::Number::New(Env(), static_cast<double>(record_->Entries())));
    } else r.Set("declined", Napi::String::New(Env(), record_->Declined()));
    record_.reset();
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error&) override {
    ref_.Reset();
    deferred_.Reject(ToJsError(Env(), err_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference ref_;
  int fd_;
  int64_t off_, len_, done_ = 0;
  Sinks sinks_;
  std::unique_ptr<TarSplitRecorder> record_;
  SysError err_;
};

Napi::Value Queue(RangeWorker* w) {
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

Napi::Value NewSha256(const Napi::CallbackInfo& info) { return Ctor(info.Env())->New({}); }

Napi::Value HashRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sha256* h = Sha256::Unwrap(info[3]);
  if (!h) throw Napi::TypeError::New(env, "hashRange(fd, offset, length, hash): hash must come from sha256()");
  return Queue(new RangeWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(),
                               info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Object>(), {h, nullptr}));
}

// crc64Range(fd, offset, length, crc): the same read, into a CRC-64 (crc64.cc)
Napi::Value Crc64Range(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Crc64* c = Crc64::Unwrap(info[3]);
  if (!c) throw Napi::TypeError::New(env, "crc64Range(fd, offset, length, crc): crc must come from crc64()");
  return Queue(new RangeWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(),
                               info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Object>(), {nullptr, c}));
}

// hashTar(fd, hash[, recordFd]): hashRange of the whole file, and with recordFd the tar's
// tar-split record made on the way and written (gzip) to recordFd as it goes
Napi::Value HashTar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sha256* h = Sha256::Unwrap(info[1]);
  if (!h) throw Napi::TypeError::New(env, "hashTar(fd, hash, recordFd?): hash must come from sha256()");
  int recordFd = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;
  return Queue(new RangeWorker(env, info[0].As<Napi::Number>().Int32Value(), 0, -1, info[1].As<Napi::Object>(), {h, nullptr, true, recordFd}));
}

void Sha256::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Sha256", {InstanceMethod("update", &Sha256::JsUpdate), InstanceMethod("digest", &Sha256::JsDigest)});
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(f)));
  exports.Set("sha256", Napi::Function::New(env, NewSha256, "sha256"));
  exports.Set("hashRange", Napi::Function::New(env, HashRange, "hashRange"));
  exports.Set("hashTar", Napi::Function::New(env, HashTar, "hashTar"));
  exports.Set("crc64Range", Napi::Function::New(env, Crc64Range, "crc64Range"));
}

}  // namespace layers
