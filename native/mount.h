// mount(2) and umount2(2), for the overlay driver: called directly rather than through a
// spawned mount(8), so errors keep their errno and nothing depends on util-linux.
#pragma once
#include <napi.h>

namespace layers {
void InitMount(Napi::Env env, Napi::Object exports);
}
