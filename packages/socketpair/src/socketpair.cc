// socketpair(2) for Node. Thin on purpose: argument policy (defaults, names,
// validation messages) lives in lib/index.ts; this file only calls the
// syscall and reports errno the way Node's own system errors look.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal/errors.h"

namespace {

using folk::ErrnoError;

#ifndef SOCK_CLOEXEC
// Without atomic flags (macOS), set them right after creation. Another thread
// could fork in between; Linux, the platform we support fully, never gets here.
int SetFlags(int fd, bool cloexec, bool nonblock) {
  if (cloexec && fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) return -1;
  int fl = fcntl(fd, F_GETFL);
  if (fl == -1) return -1;
  if (nonblock && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) return -1;
  return 0;
}
#endif

// socketpair(type: number, cloexec: boolean, nonblock: boolean): [number, number]
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsBoolean() || !info[2].IsBoolean()) {
    throw Napi::TypeError::New(env, "socketpair(type: number, cloexec: boolean, nonblock: boolean)");
  }
  int type = info[0].As<Napi::Number>().Int32Value();
  bool cloexec = info[1].As<Napi::Boolean>().Value();
  bool nonblock = info[2].As<Napi::Boolean>().Value();

  int fds[2];
#ifdef SOCK_CLOEXEC
  int flags = (cloexec ? SOCK_CLOEXEC : 0) | (nonblock ? SOCK_NONBLOCK : 0);
  if (socketpair(AF_UNIX, type | flags, 0, fds) == -1) throw ErrnoError(env, errno, "socketpair");
#else
  if (socketpair(AF_UNIX, type, 0, fds) == -1) throw ErrnoError(env, errno, "socketpair");
  if (SetFlags(fds[0], cloexec, nonblock) == -1 || SetFlags(fds[1], cloexec, nonblock) == -1) {
    int err = errno;
    close(fds[0]);
    close(fds[1]);
    throw ErrnoError(env, err, "fcntl");
  }
#endif

  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(uint32_t(0), Napi::Number::New(env, fds[0]));
  pair.Set(uint32_t(1), Napi::Number::New(env, fds[1]));
  return pair;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("SOCK_STREAM", Napi::Number::New(env, SOCK_STREAM));
  exports.Set("SOCK_SEQPACKET", Napi::Number::New(env, SOCK_SEQPACKET));
  exports.Set("SOCK_DGRAM", Napi::Number::New(env, SOCK_DGRAM));
  return exports;
}

}  // namespace

NODE_API_MODULE(socketpair, Init)
