// SCM_RIGHTS for Node: sendmsg/recvmsg carrying file descriptors and peer
// credentials (this file), and a libuv poll handle that drains a socket in
// batches (the Poller: poller.h, and the three files it names); message.h
// holds what both share.
//
// Thin on purpose. This code validates just enough that nothing a caller
// passes can crash the process, makes the syscalls, and reports errno the way
// Node's own system errors look. Everything else (argument policy, message
// framing on stream sockets, what a truncated message means, who closes which
// fd) lives in lib/.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "internal/errors.h"
#include "message.h"
#include "poller.h"

namespace {

using folk::ErrnoError;
using folk::Int32Arg;

constexpr char kSocketFdArg[] = "socketFd must be a number";

// sendFds(fd, data, fds): bytes sent. Blocks if the socket is blocking and
// full; a non-blocking one throws EAGAIN like every other error.
Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, kSocketFdArg);
  char* data;
  size_t len;
  if (info.Length() < 3 || !BytesOf(info[1], &data, &len)) throw Napi::TypeError::New(env, "data must be a typed array");
  int fds[kMaxFds];
  int nfds = FdsOf(env, info[2], fds);
  struct iovec iov = {data, len};
  ssize_t n = SendMsg(fd, &iov, 1, fds, nfds, 0);
  if (n == -1) throw ErrnoError(env, errno, "sendmsg");
  return Napi::Number::New(env, static_cast<double>(n));
}

// trySend(fd, body, fds | null, frame): bytes sent, or -1 when the socket is
// full (EAGAIN is the normal case for FdSocket's queue, so it is a value, not
// an exception). Never blocks: MSG_DONTWAIT. With `frame`, an 8-byte header
// (body length, fd count; u32 little-endian) goes first in the same sendmsg,
// built here so the hot path allocates nothing; the fds ride on its first
// byte.
Napi::Value TrySend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, kSocketFdArg);
  char* data;
  size_t len;
  if (info.Length() < 4 || !BytesOf(info[1], &data, &len)) throw Napi::TypeError::New(env, "trySend(fd, body, fds, frame)");
  int fds[kMaxFds];
  int nfds = FdsOf(env, info[2], fds);
  bool frame = info[3].ToBoolean();
  if (frame && len > 0xffffffffu) throw Napi::RangeError::New(env, "body too long for a frame");
  unsigned char head[8];
  struct iovec iov[2];
  int iovcnt = 0;
  if (frame) {
    uint32_t fields[2] = {static_cast<uint32_t>(len), static_cast<uint32_t>(nfds)};
    for (int f = 0; f < 2; f++) {
      for (int b = 0; b < 4; b++) head[4 * f + b] = static_cast<unsigned char>(fields[f] >> (8 * b));
    }
    iov[iovcnt++] = {head, sizeof head};
  }
  iov[iovcnt++] = {data, len};
  ssize_t n = SendMsg(fd, iov, iovcnt, fds, nfds, MSG_DONTWAIT);
  if (n == -1) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    throw ErrnoError(env, errno, "sendmsg");
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvFds(fd, maxBytes, maxFds): [data, fds, msg_flags]. At most maxFds fds
// come back; a message carrying more comes back with MSG_CTRUNC (the rest
// closed here or dropped by the kernel); the caller decides what that means.
Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, kSocketFdArg);
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "recvFds(fd, maxBytes, maxFds)");
  }
  int64_t maxBytes = info[1].As<Napi::Number>().Int64Value();
  int maxFds = info[2].As<Napi::Number>().Int32Value();
  if (maxBytes < 1 || maxBytes > INT32_MAX || maxFds < 0 || maxFds > kMaxFds) {
    throw Napi::RangeError::New(env, "maxBytes or maxFds out of range");
  }
  // Small reads share one buffer per thread; a large maxBytes gets its own,
  // so one big read does not pin memory for the life of the process. Both
  // nothrow: a failed allocation is an ENOMEM error (syscall 'malloc', and
  // nothing read from the socket), never std::bad_alloc and an abort.
  constexpr size_t kShared = 64 * 1024;
  thread_local std::unique_ptr<char[]> shared(new (std::nothrow) char[kShared]);
  std::unique_ptr<char[]> big;
  char* buf = shared.get();
  if (static_cast<size_t>(maxBytes) > kShared || buf == nullptr) {
    big.reset(new (std::nothrow) char[static_cast<size_t>(maxBytes)]);
    if (!big) throw ErrnoError(env, ENOMEM, "malloc");
    buf = big.get();
  }

  struct iovec iov = {buf, static_cast<size_t>(maxBytes)};
  // Room for exactly maxFds would not do: credentials come first and would
  // take it, and the fds would be cut off (MSG_CTRUNC); a pidfd comes after
  // them and would set MSG_CTRUNC with every fd there. So kOtherControl more
  // (message.h). The kernel may then install more than maxFds; TakeFds
  // closes those and sets MSG_CTRUNC, and closes the pidfd.
  ControlBuf control;
  struct msghdr msg = Message(&iov, 1, control.buf, CMSG_SPACE(sizeof(int) * maxFds) + kOtherControl);
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n == -1 && errno == EINTR);
  if (n == -1) throw ErrnoError(env, errno, "recvmsg");

  int fds[kMaxFds];
  int nfds = TakeFds(&msg, fds, maxFds);
  try {
    Napi::Array out = Napi::Array::New(env, 3);
    Napi::Array fdArr = Napi::Array::New(env, nfds);
    for (int i = 0; i < nfds; i++) fdArr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
    out.Set(0u, Napi::Buffer<char>::Copy(env, buf, static_cast<size_t>(n)));
    out.Set(1u, fdArr);
    out.Set(2u, Napi::Number::New(env, msg.msg_flags));
    return out;
  } catch (...) {
    // No Buffer for the bytes (out of memory): the fds that arrived would
    // reach no one, so they are closed before the error goes up.
    CloseAll(fds, nfds);
    throw;
  }
}

// socketInfo(fd): [domain, type, listening], for FdSocket, for the "no
// bytes, only fds on a stream socket" check (the kernel would drop such fds
// silently), and for saying why a socket has no peer.
Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, kSocketFdArg);
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1) throw ErrnoError(env, errno, "getsockopt");
  int listening = 0;
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == -1) throw ErrnoError(env, errno, "getsockopt");
  struct sockaddr_storage addr;
  socklen_t alen = sizeof addr;
  memset(&addr, 0, sizeof addr);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&addr), &alen) == -1) throw ErrnoError(env, errno, "getsockname");
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, Napi::Number::New(env, addr.ss_family));
  out.Set(1u, Napi::Number::New(env, type));
  out.Set(2u, Napi::Boolean::New(env, listening != 0));
  return out;
}

// peerCredentials(fd): [pid, uid, gid] of the peer as of connect/socketpair,
// as the kernel reports them: pid 0 and uid = gid = (uid_t)-1 when the
// socket has none (lib/index.ts turns that into ENOTCONN).
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, kSocketFdArg);
#ifdef SO_PEERCRED
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) throw ErrnoError(env, errno, "getsockopt");
  Napi::Array out = Napi::Array::New(env, 3);
  out.Set(0u, Napi::Number::New(env, cred.pid));
  out.Set(1u, Napi::Number::New(env, cred.uid));
  out.Set(2u, Napi::Number::New(env, cred.gid));
  return out;
#else
  (void)fd;
  throw ErrnoError(env, ENOSYS, "getsockopt");
#endif
}

// peerPidFd(fd): a pidfd (O_CLOEXEC, made by the kernel) for the peer.
Napi::Value PeerPidFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Int32Arg(info, 0, kSocketFdArg);
#ifdef __linux__
  int pidfd = -1;
  socklen_t len = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == -1) throw ErrnoError(env, errno, "getsockopt");
  return Napi::Number::New(env, pidfd);
#else
  (void)fd;
  throw ErrnoError(env, ENOPROTOOPT, "getsockopt");
#endif
}

// closeFds(fds): close(2) each; errors (an fd already gone) are ignored.
// For the fds this package received or dup'd and must drop. Not
// fs.closeSync: in a worker thread Node warns about every fd that fs did not
// open itself ("closed but not opened in unmanaged mode").
Napi::Value CloseFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "closeFds(fds)");
  Napi::Array arr = info[0].As<Napi::Array>();
  for (uint32_t i = 0, n = arr.Length(); i < n; i++) {
    Napi::Value v = arr.Get(i);
    if (v.IsNumber()) {
      int fd = v.As<Napi::Number>().Int32Value();
      if (fd >= 0) close(fd);
    }
  }
  return env.Undefined();
}

// shutdownWrite(fd): shutdown(SHUT_WR), errors ignored. For a stream whose
// framing a failed write broke; see FdSocket's #onWritable.
Napi::Value ShutdownWrite(const Napi::CallbackInfo& info) {
  shutdown(Int32Arg(info, 0, "fd must be a number"), SHUT_WR);
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("trySend", Napi::Function::New(env, TrySend, "trySend"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo, "socketInfo"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("peerPidFd", Napi::Function::New(env, PeerPidFd, "peerPidFd"));
  exports.Set("closeFds", Napi::Function::New(env, CloseFds, "closeFds"));
  exports.Set("shutdownWrite", Napi::Function::New(env, ShutdownWrite, "shutdownWrite"));
  exports.Set("Poller", scm::DefinePoller(env));
  exports.Set("AF_UNIX", Napi::Number::New(env, AF_UNIX));
  exports.Set("SOCK_STREAM", Napi::Number::New(env, SOCK_STREAM));
  exports.Set("SOCK_SEQPACKET", Napi::Number::New(env, SOCK_SEQPACKET));
  exports.Set("SOCK_DGRAM", Napi::Number::New(env, SOCK_DGRAM));
  exports.Set("MSG_TRUNC", Napi::Number::New(env, MSG_TRUNC));
  exports.Set("MSG_CTRUNC", Napi::Number::New(env, MSG_CTRUNC));
  exports.Set("SCM_MAX_FD", Napi::Number::New(env, kMaxFds));
  return exports;
}

}  // namespace

NODE_API_MODULE(scm_rights, Init)
