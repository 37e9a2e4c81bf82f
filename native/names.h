// Names are bytes (docs/tar-engine.md, "Names"): JS holds a name as a "surrogateescape" string,
// where valid UTF-8 decodes as usual and each byte that is not part of valid UTF-8 is the lone
// surrogate U+DC00+byte. NameFromJs is that mapping (lib/tar/names.ts encodeName in JS); NameToJs
// hands over the bytes for lib/native.ts to decode. Every path or name the addon takes or
// returns goes through them: Napi's Utf8Value and String::New(utf8) replace such bytes with
// U+FFFD, which names another file.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace layers {

// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when none starts there.
inline size_t Utf8SeqLen(const unsigned char* s, size_t i, size_t n) {
  unsigned char c = s[i];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;       // overlong
    else if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;       // overlong
    else if (c == 0xf4) hi = 0x8f;  // beyond U+10FFFF
  } else return 0;
  if (i + len > n || s[i + 1] < lo || s[i + 1] > hi) return 0;
  for (size_t k = 2; k < len; k++)
    if (s[i + k] < 0x80 || s[i + k] > 0xbf) return 0;
  return len;
}

// A name for JS: a string when it is valid UTF-8 (the usual case), else a Buffer of its bytes,
// which lib/native.ts turns into the surrogateescape string (decodeName). Napi cannot make that
// string here: napi_create_string_utf16 and String.fromCharCode called from the addon both gave
// U+FFFD for a lone surrogate on Node 20.
inline Napi::Value NameToJs(Napi::Env env, const std::string& name) {
  const unsigned char* s = reinterpret_cast<const unsigned char*>(name.data());
  size_t n = name.size(), i = 0;
  while (i < n) {
    size_t len = Utf8SeqLen(s, i, n);
    if (len == 0) return Napi::Buffer<char>::Copy(env, name.data(), n);
    i += len;
  }
  return Napi::String::New(env, name);
}

// A name from JS: a surrogateescape string or a Buffer of the bytes themselves. A lone surrogate
// that is no escaped byte has no bytes: TypeError.
inline std::string NameFromJs(Napi::Value v) {
  if (v.IsBuffer()) {
    Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
    return std::string(b.Data(), b.Length());
  }
  std::u16string u = v.As<Napi::String>().Utf16Value();
  std::string out;
  out.reserve(u.size());
  for (size_t i = 0; i < u.size(); i++) {
    uint32_t c = u[i];
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < u.size() && u[i + 1] >= 0xdc00 && u[i + 1] <= 0xdfff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (u[++i] - 0xdc00);
    } else if (c >= 0xdc80 && c <= 0xdcff) {
      out.push_back(static_cast<char>(c - 0xdc00));
      continue;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      throw Napi::TypeError::New(v.Env(), "a lone surrogate that is no escaped byte is no name");
    }
    if (c < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    }
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  }
  return out;
}

}  // namespace layers
