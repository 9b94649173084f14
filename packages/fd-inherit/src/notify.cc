// notifySend: the one system call behind lib/notify.ts (systemd's
// readiness protocol).
#include <napi.h>

#include <cstddef>
#include <cstring>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "binding.h"
#include "internal/errors.h"

namespace folk {
namespace binding {

namespace {

// The send buffer libsystemd asks for. An AF_UNIX datagram must fit in the
// sender's buffer, by default net.core.wmem_default (about 208 KiB), and a
// STATUS= line may be longer.
constexpr int kSendBuffer = 8 * 1024 * 1024;

int SendBufferSize(int fd) {
  int size = 0;
  socklen_t length = sizeof size;
  return getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &length) == 0 ? size : 0;
}

// Raises the socket's send buffer to kSendBuffer as sd_notify does:
// SO_SNDBUF, which the kernel caps at net.core.wmem_max, then, if that was
// short of it, SO_SNDBUFFORCE, which goes past the cap where CAP_NET_ADMIN
// allows. The kernel reports twice the size set (its bookkeeping), hence
// the comparison. Failing, the buffer stays as it is and a message too big
// for it is EMSGSIZE, as with libsystemd.
void RaiseSendBuffer(int fd) {
  int size = kSendBuffer;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size) == 0 && SendBufferSize(fd) >= 2 * size) return;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
}

}  // namespace

// notifySend(address, message): bytes sent. One datagram to an AF_UNIX
// address, from a new SOCK_DGRAM socket closed right after, as libsystemd's
// sd_notify sends to $NOTIFY_SOCKET, with its send buffer raised as
// libsystemd raises it. `address` is sun_path's bytes: a path, or an
// abstract name starting with a NUL byte (lib/notify.ts reads the variable,
// checks it and builds the message). The socket is blocking, as
// libsystemd's: with the receiver's queue full, the call waits for room.
Napi::Value NotifySend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "notifySend(address: Buffer, message: Buffer)");
  }
  Napi::Buffer<char> address = info[0].As<Napi::Buffer<char>>();
  Napi::Buffer<char> message = info[1].As<Napi::Buffer<char>>();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (address.Length() == 0 || address.Length() > sizeof(sa.sun_path)) {
    throw Napi::RangeError::New(env, "notifySend: the address must be 1 to 108 bytes");
  }
  memcpy(sa.sun_path, address.Data(), address.Length());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.Length());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd == -1) throw ErrnoError(env, errno, "socket");
  RaiseSendBuffer(fd);
  ssize_t sent;
  do {
    sent = sendto(fd, message.Data(), message.Length(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), length);
  } while (sent == -1 && errno == EINTR);
  int err = errno;
  close(fd);
  if (sent == -1) throw ErrnoError(env, err, "sendto");
  return Napi::Number::New(env, static_cast<double>(sent));
}

}  // namespace binding
}  // namespace folk
