// The single-file system calls Node lacks, exposed one to one.
#pragma once
#include <napi.h>

namespace layers {
void InitFsOps(Napi::Env env, Napi::Object exports);
}
