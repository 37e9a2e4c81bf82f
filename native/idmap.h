// Idmapped mounts: a user namespace with given maps, and an idmapped clone of a mount.
#pragma once
#include <napi.h>

namespace layers {
void InitIdmap(Napi::Env env, Napi::Object exports);
}
