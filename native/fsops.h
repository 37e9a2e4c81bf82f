// The single-file system calls Node lacks, exposed one to one.
#pragma once
#include <napi.h>

namespace layers {
void InitFsOps(Napi::Env env, Napi::Object exports);  // mknod, lchown, lutimes, openat2, fstatfs, constants
void InitXattr(Napi::Env env, Napi::Object exports);  // l{get,set,list,remove}xattr
void InitCopy(Napi::Env env, Napi::Object exports);   // copyRange, ficlone
}
