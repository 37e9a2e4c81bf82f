// btrfs subvolume ioctls for the btrfs driver: create, snapshot, delete, the read-only flag, and
// whether a path is a subvolume root.
#pragma once
#include <napi.h>

namespace layers {
void InitBtrfs(Napi::Env env, Napi::Object exports);
}
