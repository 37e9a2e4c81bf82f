// The tar-split record of a tar (docs/tar-engine.md, "tar-split records"), made while hashTar
// (hash.cc) reads the tar for its digest, so an import reads and walks the tar once. The lines
// are those lib/tar/tar-split.ts disassembleTar writes (Go's storage.Packer, as the peer writes
// them): for each member one segment with every byte since the previous body (its padding, the
// member's header blocks, PAX and GNU long-name data) and a file entry (Go's name rules, the
// body's CRC-64); PAX global headers and volume labels are members of their own; at the end
// the last padding and end blocks, the bytes after them in 1 MiB segments, an empty segment.
//
// The tar was accepted by lib/tar/header.ts readEntry (the extraction reading the same file),
// so this walk needs no error of its own: what it does not read exactly as disassembleTar does
// (sparse members, a name twice, base-256 sizes of extension headers, cut tars, unusual types)
// it declines, and disassembleTar, the reference, makes the record or refuses it.
#include "tar-split.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "copy.h"
#include "errors.h"
#include "crc64.h"

namespace layers {

namespace {

constexpr size_t kBlock = 512;
constexpr size_t kTrailingChunk = 1 << 20;  // tar-split's read size after the end blocks
constexpr size_t kDeflateAt = 256 << 10;    // lines gathered before they are deflated

uint64_t Pad(uint64_t n) { return (kBlock - n % kBlock) % kBlock; }

std::string CStr(const char* p, size_t len) { return std::string(p, strnlen(p, len)); }

// octal (leading spaces, ended by space or NUL) or base-256; false when neither
bool NumField(const unsigned char* f, size_t len, uint64_t* v, bool* base256) {
  uint64_t n = 0;
  *base256 = false;
  if (f[0] & 0x80) {
    if (f[0] != 0x80) return false;
    for (size_t i = 1; i < len; i++) {
      if (n >> 45) return false;  // beyond 2^53, as num() in header.ts
      n = (n << 8) | f[i];
    }
    *base256 = true;
    *v = n;
    return true;
  }
  size_t i = 0;
  while (i < len && f[i] == ' ') i++;
  for (; i < len; i++) {
    if (f[i] == ' ' || f[i] == 0) break;
    if (f[i] < '0' || f[i] > '7') return false;
    n = n * 8 + (f[i] - '0');
  }
  *v = n;
  return true;
}

bool Decimal(const std::string& s, uint64_t* v) {
  if (s.empty() || s.size() > 15) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  *v = n;
  return true;
}

// the name Go's archive/tar gives the member of this header (USTAR/PAX join the prefix, GNU does not)
std::string GoHeaderName(const char* block) {
  std::string name = CStr(block, 100);
  if (memcmp(block + 257, "ustar\0", 6) == 0) {
    std::string prefix = CStr(block + 345, 155);
    if (!prefix.empty()) return prefix + "/" + name;
  }
  return name;
}

// Go's utf8.Valid (Node's isUtf8): no overlong forms, no surrogates, nothing past U+10FFFF
bool ValidUtf8(const std::string& s) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t k;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) k = 1;
    else if (c == 0xe0) k = 2, lo = 0xa0;
    else if (c == 0xed) k = 2, hi = 0x9f;
    else if (c >= 0xe1 && c <= 0xef) k = 2;
    else if (c == 0xf0) k = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) k = 3;
    else if (c == 0xf4) k = 3, hi = 0x8f;
    else return false;
    if (i + k >= n) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t j = 2; j <= k; j++)
      if (p[i + j] < 0x80 || p[i + j] > 0xbf) return false;
    i += k + 1;
  }
  return true;
}

void Base64(std::string& out, const unsigned char* p, size_t n) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t at = out.size();
  out.resize(at + (n + 2) / 3 * 4);
  char* o = &out[at];
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    *o++ = t[v >> 18];
    *o++ = t[(v >> 12) & 63];
    *o++ = t[(v >> 6) & 63];
    *o++ = t[v & 63];
  }
  if (i < n) {
    uint32_t v = p[i] << 16;
    if (i + 1 < n) v |= p[i + 1] << 8;
    *o++ = t[v >> 18];
    *o++ = t[(v >> 12) & 63];
    *o++ = i + 1 < n ? t[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
}

// a valid UTF-8 string as Go's encoding/json writes it (goJsonString in lib/tar/tar-split.ts)
void GoJsonString(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = s[i];
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else if (c == 0xe2 && i + 2 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[i + 2]) == 0xa8 || static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
      out += static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
      i += 2;
    } else out += static_cast<char>(c);
  }
  out += '"';
}

bool StartsWith(const std::string& s, const char* p) { return s.compare(0, strlen(p), p) == 0; }

// filepath.Clean, as tar-split applies it before looking for duplicate names (cleanName in tar-split.ts)
std::string CleanName(const std::string& name) {
  if (name.empty()) return ".";
  std::string plain = StartsWith(name, "./") ? name.substr(2) : name;
  if (!plain.empty() && plain.back() == '/') plain.pop_back();
  if (!plain.empty() && plain[0] != '/' && plain.find("//") == std::string::npos && plain.find("/.") == std::string::npos && plain[0] != '.') return plain;
  bool rooted = name[0] == '/';
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string::npos) slash = name.size();
    std::string part = name.substr(start, slash - start);
    start = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!out.empty() && out.back() != "..") out.pop_back();
      else if (!rooted) out.push_back("..");
      continue;
    }
    out.push_back(part);
  }
  std::string joined;
  for (size_t i = 0; i < out.size(); i++) {
    if (i) joined += '/';
    joined += out[i];
  }
  if (rooted) return "/" + joined;
  return joined.empty() ? "." : joined;
}

}  // namespace

TarSplitRecorder::TarSplitRecorder(int outFd) : out_(outFd) {
  // gzip at level 1, as the peer's pgzip BestSpeed and TarSplitWriter's Node zlib stream
  if (deflateInit2(&z_, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK) zInit_ = true;
  else Decline("cannot initialize zlib");
}

TarSplitRecorder::~TarSplitRecorder() {
  if (zInit_) deflateEnd(&z_);
}

void TarSplitRecorder::Decline(const char* why) {
  if (state_ == kDeclined) return;
  state_ = kDeclined;
  declined_ = why;
  std::string().swap(seg_);
  std::string().swap(lines_);
  std::unordered_set<std::string>().swap(seen_);
}

void TarSplitRecorder::Feed(const char* data, size_t len) {
  while (len > 0) {
    size_t n;
    switch (state_) {
      case kDeclined:
        return;
      case kHeader:
        n = std::min(len, kBlock - (seg_.size() - blockStart_));
        seg_.append(data, n);
        if (seg_.size() - blockStart_ == kBlock) OnHeader();
        break;
      case kBody:
        n = static_cast<size_t>(std::min<uint64_t>(len, left_));
        crc_ = Crc64Update(crc_, data, n);
        left_ -= n;
        if (left_ == 0) OnBodyEnd();
        break;
      case kExtData:
      case kPad:
      case kEndBlock:
        n = static_cast<size_t>(std::min<uint64_t>(len, left_));
        seg_.append(data, n);
        left_ -= n;
        if (left_ > 0) break;
        if (state_ == kExtData) OnExtData();
        else if (state_ == kPad) {
          state_ = kHeader;
          blockStart_ = seg_.size();
        } else {
          // a zero block and a second one end the tar (a zero block and data: readEntry refuses)
          const char* b = seg_.data() + seg_.size() - kBlock;
          if (std::any_of(b, b + kBlock, [](char c) { return c != 0; })) return Decline("data after a single end block");
          EmitSegment(seg_.data(), seg_.size());
          seg_.clear();
          state_ = kTrailing;
        }
        break;
      case kTrailing:
        n = std::min(len, kTrailingChunk - seg_.size());
        seg_.append(data, n);
        if (seg_.size() == kTrailingChunk) {
          EmitSegment(seg_.data(), seg_.size());
          seg_.clear();
        }
        break;
      default:
        return;
    }
    data += n;
    len -= n;
  }
}

void TarSplitRecorder::OnHeader() {
  const char* block = seg_.data() + blockStart_;
  if (std::all_of(block, block + kBlock, [](char c) { return c == 0; })) {
    if (inMember_) return Decline("end block after an extension header");
    // disassembleTar's walk would keep a last global header in the end's segment
    if (globalLast_) return Decline("a global header or volume label is the last member");
    state_ = kEndBlock;
    left_ = kBlock;
    return;
  }
  char type = block[156];
  uint64_t size;
  bool base256;
  if (!NumField(reinterpret_cast<const unsigned char*>(block) + 124, 12, &size, &base256)) return Decline("size field");
  if (type == 'x' || type == 'g' || type == 'L' || type == 'K' || type == 'V') {
    if (base256) return Decline("base-256 size of an extension header");
    if (type == 'V' && size > 0) return Decline("volume label with a body");
    if (type == 'g' && inMember_) return Decline("global header after an extension header");
    if (type != 'g' && type != 'V') inMember_ = true;
    extType_ = type;
    extSize_ = size;
    memcpy(extHeader_, block, kBlock);
    if (size == 0) return OnExtData();
    state_ = kExtData;
    left_ = size;
    return;
  }
  bool headerOnly = type >= '1' && type <= '6';
  if (!(type == '0' || type == 0 || type == '7' || headerOnly || (type == 'D' && size == 0))) return Decline("member type");
  if (hasPaxSize_ && !paxSize_.empty() && !Decimal(paxSize_, &size)) return Decline("PAX size");
  if (headerOnly && size != 0) return Decline("header-only member with a size");
  // Go: a GNU long name wins over a PAX path, which wins over the header's fields
  std::string name = hasLongName_ && !longName_.empty() ? longName_ : hasPaxPath_ ? paxPath_ : GoHeaderName(block);
  inMember_ = hasLongName_ = hasPaxPath_ = hasPaxSize_ = globalLast_ = false;
  EmitSegment(seg_.data(), seg_.size());
  seg_.clear();
  blockStart_ = 0;
  if (size == 0) return EmitFile(name, 0, false, 0);
  name_ = std::move(name);
  size_ = left_ = size;
  crc_ = 0;
  state_ = kBody;
}

void TarSplitRecorder::OnExtData() {
  const std::string data = seg_.substr(seg_.size() - extSize_);
  if (extType_ == 'x') {
    // paxPath in tar-split.ts: the last 'path' record, an empty one meaning none; and 'size'
    size_t i = 0;
    bool found = false;
    std::string path;
    while (i < data.size()) {
      size_t sp = data.find(' ', i);
      if (sp == std::string::npos) break;
      uint64_t len;
      if (!Decimal(data.substr(i, sp - i), &len)) return Decline("PAX record length");
      if (len == 0) break;
      if (i + len > data.size() || sp + 1 > i + len - 1) return Decline("PAX record");
      std::string rec = data.substr(sp + 1, i + len - 1 - (sp + 1));
      size_t eq = rec.find('=');
      if (eq == std::string::npos) return Decline("PAX record");
      std::string key = rec.substr(0, eq);
      if (key == "path") {
        found = rec.size() > 5;
        path = found ? rec.substr(5) : std::string();
      } else if (key == "size") {
        hasPaxSize_ = true;
        paxSize_ = rec.substr(eq + 1);
      } else if (StartsWith(key, "GNU.sparse.")) return Decline("sparse member");
      i += len;
    }
    if (found) {
      hasPaxPath_ = true;
      paxPath_ = std::move(path);
    }
  } else if (extType_ == 'L') {
    longName_ = CStr(data.data(), data.size());
    hasLongName_ = true;
  } else if (extType_ == 'g' || extType_ == 'V') {
    // a member of its own, as Go reads it; its padding opens the next segment
    EmitSegment(seg_.data(), seg_.size());
    seg_.clear();
    inMember_ = hasLongName_ = hasPaxPath_ = hasPaxSize_ = false;
    EmitFile(GoHeaderName(extHeader_), 0, false, 0);
    if (state_ == kDeclined) return;
    globalLast_ = true;
  }
  left_ = Pad(extSize_);
  state_ = left_ > 0 ? kPad : kHeader;
  blockStart_ = seg_.size();
}

void TarSplitRecorder::OnBodyEnd() {
  EmitFile(name_, size_, true, crc_);
  if (state_ == kDeclined) return;
  left_ = Pad(size_);
  state_ = left_ > 0 ? kPad : kHeader;
  blockStart_ = seg_.size();
}

void TarSplitRecorder::EmitSegment(const char* data, size_t len) {
  line_ = "{\"type\":2,\"payload\":\"";
  Base64(line_, reinterpret_cast<const unsigned char*>(data), len);
  line_ += "\",\"position\":";
  Line();
}

void TarSplitRecorder::EmitFile(const std::string& name, uint64_t size, bool hasCrc, uint64_t crc) {
  if (!seen_.insert(CleanName(name)).second) return Decline("a second entry for one path");
  bool utf8 = ValidUtf8(name);
  line_ = "{\"type\":1";
  if (!name.empty() && utf8) {
    line_ += ",\"name\":";
    GoJsonString(line_, name);
  }
  if (!utf8) {
    line_ += ",\"name_raw\":\"";
    Base64(line_, reinterpret_cast<const unsigned char*>(name.data()), name.size());
    line_ += '"';
  }
  if (size) line_ += ",\"size\":" + std::to_string(size);
  if (hasCrc) {
    unsigned char be[8];
    for (int i = 0; i < 8; i++) be[i] = static_cast<unsigned char>(crc >> (56 - 8 * i));
    line_ += ",\"payload\":\"";
    Base64(line_, be, 8);
    line_ += '"';
  } else line_ += ",\"payload\":null";
  line_ += ",\"position\":";
  Line();
}

// ends line_ with its position and queues it for gzip
void TarSplitRecorder::Line() {
  if (state_ == kDeclined) return;
  line_ += std::to_string(position_++);
  line_ += "}\n";
  lines_ += line_;
  if (lines_.size() >= kDeflateAt) Deflate(Z_NO_FLUSH);
}

void TarSplitRecorder::Deflate(int flush) {
  z_.next_in = reinterpret_cast<Bytef*>(lines_.data());
  z_.avail_in = static_cast<uInt>(lines_.size());
  char buf[64 << 10];
  int rc;
  do {
    z_.next_out = reinterpret_cast<Bytef*>(buf);
    z_.avail_out = sizeof(buf);
    rc = deflate(&z_, flush);
    if (rc == Z_STREAM_ERROR) return Decline("zlib");
    size_t n = sizeof(buf) - z_.avail_out;
    try {
      WriteFull(out_, static_cast<int64_t>(written_), buf, n);
    } catch (const SysError& e) {
      // the caller's fallback writes the record again and meets the same error, with its name
      why_ = std::string("writing the record: ") + strerror(e.err);
      return Decline(why_.c_str());
    }
    written_ += n;
  } while (z_.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  lines_.clear();
}

void TarSplitRecorder::Finish() {
  switch (state_) {
    case kDeclined:
      return;
    case kHeader:
      // the tar may end right after a member, without end blocks; not inside a header
      if (seg_.size() != blockStart_) return Decline("cut header");
      if (inMember_) return Decline("extension header without its member");
      if (globalLast_) return Decline("a global header or volume label is the last member");
      break;
    case kEndBlock:
    case kTrailing:
      break;
    default:
      return Decline("the tar ends inside a member");
  }
  if (!seg_.empty()) EmitSegment(seg_.data(), seg_.size());
  EmitSegment("", 0);  // what the peer (tar-split 0.11) writes last
  if (state_ != kDeclined) Deflate(Z_FINISH);
  std::string().swap(seg_);
}

}  // namespace layers
