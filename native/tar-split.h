#pragma once
// The tar-split record of a tar, made in the read that hashes it (hash.cc, hashTar): see
// tar-split.cc and docs/tar-engine.md, "tar-split records".
#include <zlib.h>

#include <cstdint>
#include <string>
#include <unordered_set>

namespace layers {

class TarSplitRecorder {
 public:
  // the gzipped record is written to outFd as it is made (memory stays flat whatever the tar)
  explicit TarSplitRecorder(int outFd);
  ~TarSplitRecorder();
  TarSplitRecorder(const TarSplitRecorder&) = delete;
  TarSplitRecorder& operator=(const TarSplitRecorder&) = delete;
  // the tar's bytes, from offset 0, in order
  void Feed(const char* data, size_t len);
  // at the end of the input: the last segments, the end of the gzip stream
  void Finish();
  // empty when the record was made; else why this walk leaves the tar to disassembleTar
  const std::string& Declined() const { return declined_; }
  // bytes of gzip written to outFd (the whole record after Finish when not declined)
  uint64_t Written() const { return written_; }
  uint64_t Entries() const { return position_; }

 private:
  enum State { kHeader, kExtData, kBody, kPad, kEndBlock, kTrailing, kDeclined };
  void Decline(const char* why);
  void OnHeader();
  void OnExtData();
  void OnBodyEnd();
  void EmitSegment(const char* data, size_t len);
  void EmitFile(const std::string& name, uint64_t size, bool hasCrc, uint64_t crc);
  void Line();
  void Deflate(int flush);

  State state_ = kHeader;
  std::string seg_;  // bytes read since the last body, or since the last segment emitted
  size_t blockStart_ = 0;  // where the header block being read starts in seg_
  uint64_t left_ = 0;      // bytes left of the current body, extension data or padding
  // the member being read: its extension headers
  bool inMember_ = false;
  bool globalLast_ = false;  // the last member was a global header or a volume label
  char extType_ = 0;
  uint64_t extSize_ = 0;
  char extHeader_[512];
  std::string longName_;
  bool hasLongName_ = false;
  std::string paxPath_;
  bool hasPaxPath_ = false;
  std::string paxSize_;
  bool hasPaxSize_ = false;
  // the member whose body is being read
  std::string name_;
  uint64_t size_ = 0;
  uint64_t crc_ = 0;
  uint64_t trailingFill_ = 0;
  uint64_t position_ = 0;
  std::unordered_set<std::string> seen_;
  std::string line_, lines_;
  int out_;
  uint64_t written_ = 0;
  std::string why_;  // the text of a decline that is not a constant
  z_stream z_{};
  bool zInit_ = false;
  std::string declined_;
};

}  // namespace layers
