#include "crc64.h"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace layers {

namespace {

// x^64 + x^4 + x^3 + x + 1, reflected: Go's crc64.ISO
constexpr uint64_t kIsoReflected = 0xD800000000000000ULL;

struct Tables {
  uint64_t t[8][256];
  Tables() {
    for (int i = 0; i < 256; i++) {
      uint64_t c = static_cast<uint64_t>(i);
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ kIsoReflected : c >> 1;
      t[0][i] = c;
    }
    // t[k][i]: the CRC of byte i followed by k zero bytes, so 8 bytes are folded per step
    for (int i = 0; i < 256; i++)
      for (int k = 1; k < 8; k++) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
  }
};

const Tables& T() {
  static const Tables tables;  // thread-safe initialization (C++11)
  return tables;
}

// the table walk on the CRC register (no inversions), 8 bytes a step
uint64_t TableUpdate(uint64_t crc, const unsigned char* p, size_t len) {
  const Tables& tb = T();
  while (len >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);  // little-endian load (x86-64, aarch64 as we build them)
    crc ^= v;
    crc = tb.t[7][crc & 0xff] ^ tb.t[6][(crc >> 8) & 0xff] ^ tb.t[5][(crc >> 16) & 0xff] ^ tb.t[4][(crc >> 24) & 0xff] ^
          tb.t[3][(crc >> 32) & 0xff] ^ tb.t[2][(crc >> 40) & 0xff] ^ tb.t[1][(crc >> 48) & 0xff] ^ tb.t[0][crc >> 56];
    p += 8;
    len -= 8;
  }
  while (len--) crc = tb.t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
// Carry-less multiplication (PCLMULQDQ) folds 16 bytes a step: the CRC-64 of a tar's bodies
// is most of the CPU its tar-split record costs at import (docs/performance.md), and the table
// walk does ~1.7 GB/s. The bytes so far, as a polynomial A of the 128 bits in `acc` (reflected:
// the low qword holds the higher-degree half L, the high qword H), are kept congruent mod P;
// the next 16 bytes D make acc = L*x^192 + H*x^128 + D (mod P), each product a 64x64
// multiplication by a constant. The register is then the CRC of acc's 16 bytes from 0.

// x^n mod P, P = x^64 + x^4 + x^3 + x + 1 (not reflected)
uint64_t XPowModP(unsigned n) {
  uint64_t r = 1;
  for (unsigned i = 0; i < n; i++) r = (r << 1) ^ ((r >> 63) ? 0x1BULL : 0);
  return r;
}

uint64_t Reflect64(uint64_t v) {
  uint64_t r = 0;
  for (int i = 0; i < 64; i++)
    if ((v >> i) & 1) r |= 1ULL << (63 - i);
  return r;
}

// a reflected 64x64 product lands one bit short of the 128-bit reflected form, so the
// constants are x^191 and x^127 (the product carries the missing factor x)
struct FoldConstants {
  uint64_t k192 = Reflect64(XPowModP(191)), k128 = Reflect64(XPowModP(127));
  // four lanes of 16 bytes, each advanced 64 bytes a step: independent multiplications, so
  // the loop is not bound by one multiplication's latency
  uint64_t k576 = Reflect64(XPowModP(575)), k512 = Reflect64(XPowModP(511));
};

__attribute__((target("pclmul,sse2"))) inline __m128i Fold(__m128i acc, __m128i k, __m128i d) {
  return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(acc, k, 0x00), _mm_clmulepi64_si128(acc, k, 0x11)), d);
}

__attribute__((target("pclmul,sse2"))) inline __m128i Load(const unsigned char* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

__attribute__((target("pclmul,sse2"))) uint64_t FoldUpdate(uint64_t crc, const unsigned char*& p, size_t& len) {
  static const FoldConstants c;
  const __m128i k = _mm_set_epi64x(static_cast<long long>(c.k128), static_cast<long long>(c.k192));
  const __m128i k4 = _mm_set_epi64x(static_cast<long long>(c.k512), static_cast<long long>(c.k576));
  // len >= 64: the stream is acc0*x^384 + acc1*x^256 + acc2*x^128 + acc3
  __m128i acc = _mm_xor_si128(Load(p), _mm_cvtsi64_si128(static_cast<long long>(crc)));
  __m128i acc1 = Load(p + 16), acc2 = Load(p + 32), acc3 = Load(p + 48);
  p += 64;
  len -= 64;
  for (; len >= 64; p += 64, len -= 64) {
    acc = Fold(acc, k4, Load(p));
    acc1 = Fold(acc1, k4, Load(p + 16));
    acc2 = Fold(acc2, k4, Load(p + 32));
    acc3 = Fold(acc3, k4, Load(p + 48));
  }
  acc = Fold(Fold(Fold(acc, k, acc1), k, acc2), k, acc3);
  for (; len >= 16; p += 16, len -= 16) acc = Fold(acc, k, Load(p));
  unsigned char rest[16];
  _mm_storeu_si128(reinterpret_cast<__m128i*>(rest), acc);
  return TableUpdate(0, rest, 16);
}

bool HaveClmul() {
  static const bool have = __builtin_cpu_supports("pclmul");
  return have;
}
#endif

}  // namespace

uint64_t Crc64Update(uint64_t crc, const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (len >= 64 && HaveClmul()) crc = FoldUpdate(crc, p, len);
#endif
  return ~TableUpdate(crc, p, len);
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Crc64Update's 8-byte step assumes a little-endian host");

// The class constructor and the type tag that proves an object is ours. The env's single
// instance-data slot belongs to Sha256 (hash.cc), so the constructor travels as the factory
// function's data, and Unwrap checks the tag instead of instanceof.
static const napi_type_tag kCrc64Tag = {0x6c61796572736372ULL, 0x6336342d69736f31ULL};

Crc64::Crc64(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Crc64>(info) { info.This().As<Napi::Object>().TypeTag(&kCrc64Tag); }

Crc64* Crc64::Unwrap(Napi::Value v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.CheckTypeTag(&kCrc64Tag)) return nullptr;
  return Napi::ObjectWrap<Crc64>::Unwrap(o);
}

Napi::Value Crc64::JsUpdate(const Napi::CallbackInfo& info) {
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(info.Env(), "crc64.update: want a Buffer");
  auto b = info[0].As<Napi::Buffer<uint8_t>>();
  Update(b.Data(), b.Length());
  return info.Env().Undefined();
}

// 8 bytes, big-endian: what Go's hash.Hash64.Sum appends, and so what tar-split stores
Napi::Value Crc64::JsSum(const Napi::CallbackInfo& info) {
  auto out = Napi::Buffer<uint8_t>::New(info.Env(), 8);
  for (int i = 0; i < 8; i++) out.Data()[i] = static_cast<uint8_t>(crc_ >> (56 - 8 * i));
  return out;
}

Napi::Value Crc64::JsReset(const Napi::CallbackInfo& info) {
  crc_ = 0;
  return info.Env().Undefined();
}

namespace {

Napi::Value NewCrc64(const Napi::CallbackInfo& info) {
  auto* ctor = static_cast<Napi::FunctionReference*>(info.Data());
  return ctor->New({});
}

}  // namespace

void Crc64::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Crc64", {InstanceMethod("update", &Crc64::JsUpdate), InstanceMethod("sum", &Crc64::JsSum),
                                                InstanceMethod("reset", &Crc64::JsReset)});
  auto* ctor = new Napi::FunctionReference(Napi::Persistent(f));
  env.AddCleanupHook([ctor]() { delete ctor; });
  exports.Set("crc64", Napi::Function::New(env, NewCrc64, "crc64", ctor));
}

}  // namespace layers
