#include "hash.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "crc64.h"
#include "errors.h"

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

// Follows the tar headers in the bytes that pass (a tar from offset 0) and computes the CRC-64 of
// every member body, as tar-split records them (docs/tar-engine.md, "tar-split records"): a body
// is the `size` bytes after a header, except for Go's header-only types ('1'..'6'); PAX ('x',
// 'g') and GNU long-name ('L', 'K') data are not bodies. It stops at the first zero block (the
// end) or at a header it cannot read; the caller checks each CRC against its own header scan and
// computes what is missing itself, so a tar this walk misreads (GNU sparse 'S' with extension
// blocks) costs time, never a wrong record.
class TarBodyCrcs {
 public:
  void Feed(const char* data, size_t len) {
    while (len > 0 && state_ != kDone) {
      if (state_ == kHeader) {
        size_t n = std::min(len, kBlock - filled_);
        memcpy(header_ + filled_, data, n);
        filled_ += n;
        pos_ += n;
        data += n;
        len -= n;
        if (filled_ == kBlock) Header();
      } else {
        size_t n = static_cast<size_t>(std::min<uint64_t>(len, left_));
        if (state_ == kBody) crc_ = Crc64Update(crc_, data, n);
        left_ -= n;
        pos_ += n;
        data += n;
        len -= n;
        if (left_ == 0) EndOfData();
      }
    }
  }
  // pairs of (body offset, CRC-64 value), both little-endian u64
  const std::vector<uint64_t>& Bodies() const { return out_; }

 private:
  static constexpr size_t kBlock = 512;
  enum State { kHeader, kBody, kSkip, kDone };

  static uint64_t Pad(uint64_t n) { return (kBlock - n % kBlock) % kBlock; }

  bool Size(uint64_t* v) const {
    const unsigned char* f = reinterpret_cast<const unsigned char*>(header_) + 124;
    uint64_t n = 0;
    if (f[0] & 0x80) {  // base-256
      for (int i = 1; i < 12; i++) {
        if (n >> 55) return false;
        n = (n << 8) | f[i];
      }
      *v = n;
      return true;
    }
    int i = 0;
    while (i < 12 && (f[i] == ' ' || f[i] == 0)) i++;
    for (; i < 12 && f[i] >= '0' && f[i] <= '7'; i++) n = n * 8 + (f[i] - '0');
    *v = n;
    return true;
  }

  void Header() {
    filled_ = 0;
    bool zero = true;
    for (size_t i = 0; i < kBlock && zero; i++) zero = header_[i] == 0;
    uint64_t size = 0;
    if (zero || !Size(&size)) {
      state_ = kDone;
      return;
    }
    char type = header_[156];
    bool ext = type == 'x' || type == 'g' || type == 'L' || type == 'K';
    bool headerOnly = type >= '1' && type <= '6';
    if (headerOnly) size = 0;
    if (size == 0) return;  // next header follows
    left_ = size;
    if (ext) {
      state_ = kSkip;
      left_ += Pad(size);
      return;
    }
    state_ = kBody;
    start_ = pos_;
    pad_ = Pad(size);
    crc_ = 0;
  }

  void EndOfData() {
    if (state_ == kBody) {
      out_.push_back(start_);
      out_.push_back(crc_);
      if (pad_ > 0) {
        state_ = kSkip;
        left_ = pad_;
        return;
      }
    }
    state_ = kHeader;
  }

  State state_ = kHeader;
  char header_[kBlock];
  size_t filled_ = 0;
  uint64_t pos_ = 0, left_ = 0, start_ = 0, pad_ = 0, crc_ = 0;
  std::vector<uint64_t> out_;
};

// The one worker that reads a file range and feeds what it reads to each digest asked for:
// the sha256 (hashRange), the CRC-64 (crc64Range), or both and the body CRCs of a tar
// (hashTar), so every byte is read once whatever is computed from it.
class RangeWorker : public Napi::AsyncWorker {
 public:
  struct Sinks {
    Sha256* hash = nullptr;
    Crc64* crc = nullptr;
    bool tarBodies = false;
  };
  // owner: the JS object of the digest, kept alive while the worker runs
  RangeWorker(Napi::Env env, int fd, int64_t off, int64_t len, Napi::Object owner, Sinks sinks)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), off_(off), len_(len), sinks_(sinks) {
    ref_ = Napi::Persistent(owner);
    if (sinks.tarBodies) bodies_ = std::make_unique<TarBodyCrcs>();
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
      if (bodies_) bodies_->Feed(buf.data(), static_cast<size_t>(n));
      pos += n;
      done_ += n;
    }
  }
  void OnOK() override {
    ref_.Reset();
    if (!bodies_) return deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(done_)));
    const auto& b = bodies_->Bodies();
    Napi::Object r = Napi::Object::New(Env());
    r.Set("size", Napi::Number::New(Env(), static_cast<double>(done_)));
    r.Set("bodies", Napi::Buffer<uint8_t>::Copy(Env(), reinterpret_cast<const uint8_t*>(b.data()), b.size() * sizeof(uint64_t)));
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
  std::unique_ptr<TarBodyCrcs> bodies_;
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
                               info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Object>(), {h, nullptr, false}));
}

// crc64Range(fd, offset, length, crc): the same read, into a CRC-64 (crc64.cc)
Napi::Value Crc64Range(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Crc64* c = Crc64::Unwrap(info[3]);
  if (!c) throw Napi::TypeError::New(env, "crc64Range(fd, offset, length, crc): crc must come from crc64()");
  return Queue(new RangeWorker(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(),
                               info[2].As<Napi::Number>().Int64Value(), info[3].As<Napi::Object>(), {nullptr, c, false}));
}

// hashTar(fd, hash): hashRange of the whole file, and the CRC-64 of each member body on the way
Napi::Value HashTar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sha256* h = Sha256::Unwrap(info[1]);
  if (!h) throw Napi::TypeError::New(env, "hashTar(fd, hash): hash must come from sha256()");
  return Queue(new RangeWorker(env, info[0].As<Napi::Number>().Int32Value(), 0, -1, info[1].As<Napi::Object>(), {h, nullptr, true}));
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
