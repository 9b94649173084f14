// The binding's fd calls besides spawn: a pipe for stdio (lib/stdio.ts),
// its close, and the close-on-exec flag (lib/cloexec.ts, lib/listen-fds.ts).
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "binding.h"
#include "internal/errors.h"
#include "spawn.h"

namespace folk {
namespace binding {

namespace {

constexpr char kFdArg[] = "fd must be a number";

}  // namespace

// pipe(): [readEnd, writeEnd], both CLOEXEC and both at 3 or above (see
// MoveAboveStdio).
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) == -1) throw ErrnoError(env, errno, "pipe2");
  for (int& fd : fds) {
    int moved = folk::MoveAboveStdio(fd);
    if (moved == -1) {
      int err = errno;
      close(fds[0]);
      close(fds[1]);
      throw ErrnoError(env, err, "fcntl");
    }
    fd = moved;
  }
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(uint32_t(0), Napi::Number::New(env, fds[0]));
  pair.Set(uint32_t(1), Napi::Number::New(env, fds[1]));
  return pair;
}

// close(fd): undefined. For the pipe ends pipe() made: fs.closeSync on an fd
// that fs did not open makes a worker thread print a warning.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0, kFdArg);
  if (close(fd) == -1 && errno != EINTR) throw ErrnoError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// getCloexec(fd): boolean
Napi::Value GetCloexec(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0, kFdArg);
  int flags = fcntl(fd, F_GETFD);
  if (flags == -1) throw ErrnoError(info.Env(), errno, "fcntl");
  return Napi::Boolean::New(info.Env(), (flags & FD_CLOEXEC) != 0);
}

// setCloexec(fd, on): undefined
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  int fd = Int32Arg(info, 0, kFdArg);
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "setCloexec(fd, on: boolean)");
  bool on = info[1].As<Napi::Boolean>().Value();
  int flags = fcntl(fd, F_GETFD);
  if (flags == -1) throw ErrnoError(info.Env(), errno, "fcntl");
  int next = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (next != flags && fcntl(fd, F_SETFD, next) == -1) throw ErrnoError(info.Env(), errno, "fcntl");
  return info.Env().Undefined();
}

}  // namespace binding
}  // namespace folk
