// btrfs ioctls for the btrfs driver: subvolume create, snapshot, delete, the read-only flag,
// whether a path is a subvolume root, and quota groups for size limits.
#pragma once
#include <napi.h>

namespace layers {
void InitBtrfs(Napi::Env env, Napi::Object exports);
}
