// shiftOwners: every owner in a tree moved from one id mapping to another, walked and changed on
// a worker thread (one call for the whole tree, as chown -R costs, not a crossing per file).
#pragma once
#include <napi.h>

namespace layers {
void InitShift(Napi::Env env, Napi::Object exports);
}
