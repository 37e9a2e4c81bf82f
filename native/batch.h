// The apply batch and the tar segment writer: many file operations in one native call, on a
// libuv worker thread, so large layers do not pay one async round trip per file.
#pragma once
#include <napi.h>

namespace layers {
void InitApplyBatch(Napi::Env env, Napi::Object exports);
void InitWriteSegments(Napi::Env env, Napi::Object exports);
}
