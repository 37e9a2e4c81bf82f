// CRC-64 with the ISO polynomial, bit-reflected, as Go's hash/crc64 computes it with
// crc64.MakeTable(crc64.ISO): the checksum tar-split records for every file body
// (docs/tar-engine.md, "tar-split records"). Slicing-by-8 tables, so a body is checksummed at
// several GB/s where it already is (a native copy, a file range), never in JS.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace layers {

// The running value as Go keeps it between Update calls (the un-inverted CRC); 0 for no bytes.
uint64_t Crc64Update(uint64_t crc, const void* data, size_t len);

class Crc64 : public Napi::ObjectWrap<Crc64> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);  // exports crc64(); crc64Range() is hash.cc's range worker
  explicit Crc64(const Napi::CallbackInfo& info);
  void Update(const void* data, size_t len) { crc_ = Crc64Update(crc_, data, len); }  // any thread, one at a time
  uint64_t Value() const { return crc_; }
  static Crc64* Unwrap(Napi::Value v);  // nullptr when v is not a Crc64

 private:
  Napi::Value JsUpdate(const Napi::CallbackInfo& info);
  Napi::Value JsSum(const Napi::CallbackInfo& info);
  Napi::Value JsReset(const Napi::CallbackInfo& info);
  uint64_t crc_ = 0;
};

}  // namespace layers
