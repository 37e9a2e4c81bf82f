// Whole-file record locks of the open-file-description kind (F_OFD_*). They conflict with the
// classic POSIX record locks (F_SETLKW) containers/storage takes, so the peer and we exclude each
// other; unlike POSIX locks they belong to the open file description, so closing another fd of
// the same file in this process does not drop them, and two descriptions in one process do
// conflict (docs/sharing.md, "Locks"). The kernel drops them when the last fd of the
// description is closed, also when the process dies.
#include "lockfile.h"

#include <fcntl.h>

#include <cerrno>
#include <string>

#include "errors.h"
#include "js.h"

namespace layers {
namespace {

// 'r' -> F_RDLCK, 'w' -> F_WRLCK, 'u' -> F_UNLCK; anything else is a TypeError.
short LockType(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsString()) {
    std::string t = info[i].As<Napi::String>().Utf8Value();
    if (t == "r") return F_RDLCK;
    if (t == "w") return F_WRLCK;
    if (t == "u") return F_UNLCK;
  }
  throw Napi::TypeError::New(info.Env(), "lock type must be 'r', 'w' or 'u'");
}

int FdArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  return IntArg(info, 0);
}

// The whole file, now and as it grows: start 0, length 0. l_pid must be 0 for OFD commands.
struct flock WholeFile(short type) {
  struct flock lk = {};
  lk.l_type = type;
  lk.l_whence = SEEK_SET;
  lk.l_start = 0;
  lk.l_len = 0;
  lk.l_pid = 0;
  return lk;
}

// F_OFD_SETLKW, retried on EINTR (a signal interrupts the wait; the caller still wants the lock).
int WaitLock(int fd, short type) {
  struct flock lk = WholeFile(type);
  for (;;) {
    if (fcntl(fd, F_OFD_SETLKW, &lk) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

class LockWorker : public Napi::AsyncWorker {
 public:
  LockWorker(Napi::Env env, int fd, short type)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fd_(fd), type_(type) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int err = WaitLock(fd_, type_);
    if (err != 0) {
      err_.err = err;
      err_.syscall = "fcntl(F_OFD_SETLKW)";
      SetError(err_.syscall);  // OnError rejects with err_, not this
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error&) override { deferred_.Reject(ToJsError(Env(), err_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  short type_;
  SysError err_;
};

// ofdLock(fd, 'r' | 'w'): waits on a worker thread, so the event loop runs while another
// process holds a conflicting lock.
Napi::Value OfdLockJs(const Napi::CallbackInfo& info) {
  int fd = FdArg(info);
  short type = LockType(info, 1);
  if (type == F_UNLCK) throw Napi::TypeError::New(info.Env(), "ofdLock takes 'r' or 'w'; use ofdUnlock");
  auto* w = new LockWorker(info.Env(), fd, type);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ofdTryLock(fd, 'r' | 'w'): true when taken, false while a conflicting lock is held elsewhere.
Napi::Value OfdTryLockJs(const Napi::CallbackInfo& info) {
  int fd = FdArg(info);
  short type = LockType(info, 1);
  if (type == F_UNLCK) throw Napi::TypeError::New(info.Env(), "ofdTryLock takes 'r' or 'w'; use ofdUnlock");
  return Guard(info.Env(), [&]() -> Napi::Value {
    struct flock lk = WholeFile(type);
    while (fcntl(fd, F_OFD_SETLK, &lk) != 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EACCES) return Napi::Boolean::New(info.Env(), false);
      Fail(errno, "fcntl(F_OFD_SETLK)");
    }
    return Napi::Boolean::New(info.Env(), true);
  });
}

// ofdUnlock(fd): releases this open file description's lock (closing its last fd does too).
Napi::Value OfdUnlockJs(const Napi::CallbackInfo& info) {
  int fd = FdArg(info);
  return Guard(info.Env(), [&]() -> Napi::Value {
    struct flock lk = WholeFile(F_UNLCK);
    while (fcntl(fd, F_OFD_SETLK, &lk) != 0) {
      if (errno != EINTR) Fail(errno, "fcntl(F_OFD_SETLK)");
    }
    return info.Env().Undefined();
  });
}

// ofdGetLock(fd, 'r' | 'w'): null when a lock of that type could be taken now, else the first
// conflicting lock: { type: 'r' | 'w', pid } where pid is the holder's for a POSIX lock and -1
// for an OFD lock (those have no owning process).
Napi::Value OfdGetLockJs(const Napi::CallbackInfo& info) {
  int fd = FdArg(info);
  short type = LockType(info, 1);
  if (type == F_UNLCK) throw Napi::TypeError::New(info.Env(), "ofdGetLock takes 'r' or 'w'");
  return Guard(info.Env(), [&]() -> Napi::Value {
    struct flock lk = WholeFile(type);
    if (fcntl(fd, F_OFD_GETLK, &lk) != 0) Fail(errno, "fcntl(F_OFD_GETLK)");
    if (lk.l_type == F_UNLCK) return info.Env().Null();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("type", lk.l_type == F_RDLCK ? "r" : "w");
    o.Set("pid", static_cast<double>(lk.l_pid));
    return o;
  });
}

}  // namespace

void InitLockfile(Napi::Env env, Napi::Object exports) {
  exports.Set("ofdLock", Napi::Function::New(env, OfdLockJs, "ofdLock"));
  exports.Set("ofdTryLock", Napi::Function::New(env, OfdTryLockJs, "ofdTryLock"));
  exports.Set("ofdUnlock", Napi::Function::New(env, OfdUnlockJs, "ofdUnlock"));
  exports.Set("ofdGetLock", Napi::Function::New(env, OfdGetLockJs, "ofdGetLock"));
}

}  // namespace layers
