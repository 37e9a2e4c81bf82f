// zstdDecompress: a zstd layer inflated by the system libzstd on a worker thread (zstd.cc).
#pragma once
#include <napi.h>

namespace layers {
void InitZstd(Napi::Env env, Napi::Object exports);
}
