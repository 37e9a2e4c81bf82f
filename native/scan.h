// scanDir: every child of a directory with its stat, link target and xattrs in one call, so a
// tree walk costs one crossing into native code per directory instead of several per file.
#pragma once
#include <napi.h>

namespace layers {
void InitScan(Napi::Env env, Napi::Object exports);
}
