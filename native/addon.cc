// The addon's entry point: registers each concern's functions (lib/native.ts is the contract).
#include <napi.h>

#include "batch.h"
#include "btrfs.h"
#include "cancel.h"
#include "crc64.h"
#include "fsops.h"
#include "hash.h"
#include "idmap.h"
#include "lockfile.h"
#include "mount.h"
#include "scan.h"
#include "shift.h"
#include "zstd.h"

namespace layers {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitCopy(env, exports);
  InitXattr(env, exports);
  InitFsOps(env, exports);
  InitApplyBatch(env, exports);
  InitWriteSegments(env, exports);
  InitMount(env, exports);
  InitIdmap(env, exports);
  InitScan(env, exports);
  InitShift(env, exports);
  InitBtrfs(env, exports);
  InitLockfile(env, exports);
  InitZstd(env, exports);
  InitCancel(env, exports);
  Sha256::Init(env, exports);
  Crc64::Init(env, exports);
  return exports;
}

}  // namespace layers

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return layers::Init(env, exports); }

NODE_API_MODULE(layers_native, InitAddon)
