// sha256 through the OpenSSL EVP functions the Node binary itself exports: a tar's digest is
// computed where its bytes already are, with no JS buffer.
#pragma once
#include <napi.h>
#include <openssl/evp.h>

#include <cstddef>

namespace layers {

class Sha256 : public Napi::ObjectWrap<Sha256> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);  // exports sha256() and hashRange()
  explicit Sha256(const Napi::CallbackInfo& info);
  ~Sha256() override;
  void Update(const void* data, size_t len);  // any thread, one at a time
  static Sha256* Unwrap(Napi::Value v);        // nullptr when v is not a Sha256

 private:
  Napi::Value JsUpdate(const Napi::CallbackInfo& info);
  Napi::Value JsDigest(const Napi::CallbackInfo& info);
  EVP_MD_CTX* ctx_ = nullptr;
  bool done_ = false;
};

}  // namespace layers
