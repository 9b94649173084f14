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

// notifySend(address, message): bytes sent. One datagram to an AF_UNIX
// address, from a new SOCK_DGRAM socket closed right after, as libsystemd's
// sd_notify sends to $NOTIFY_SOCKET. `address` is sun_path's bytes: a path,
// or an abstract name starting with a NUL byte (lib/notify.ts reads the
// variable and builds the message). The socket is blocking, as libsystemd's:
// with the receiver's queue full, the call waits for room.
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
