// Open-file-description record locks (fcntl F_OFD_SETLK / F_OFD_SETLKW / F_OFD_GETLK) on a
// whole file, for the lock files containers/storage shares (docs/sharing.md, "Locks").
#pragma once
#include <napi.h>

namespace layers {
void InitLockfile(Napi::Env env, Napi::Object exports);
}
