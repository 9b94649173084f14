// What the sync calls and the Poller share: the limits, the control-message
// room, and the helpers that read a send's arguments and build and take
// apart a msghdr. Inline in an unnamed namespace, as internal/errors.h is:
// each file compiles its own copy.
#pragma once

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {


// The kernel's per-message limit (SCM_MAX_FD in include/net/scm.h). It is not
// exported to userspace headers.
constexpr int kMaxFds = 253;

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; older libc headers lack it
#endif
#ifndef MSG_CMSG_CLOEXEC
// macOS: no atomic close-on-exec for received fds; set it right after.
#define MSG_CMSG_CLOEXEC 0
#define SCM_SET_CLOEXEC_AFTER 1
#endif
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#ifndef POLLRDHUP
#define POLLRDHUP POLLHUP
#endif

#if defined(__linux__) && !defined(SCM_PIDFD)
#define SCM_PIDFD 0x04  // Linux 6.5; older libc headers lack it
#endif

// Room, besides the fds, for the control messages a socket may be set to add
// to every message it receives. The kernel writes them in this order:
// SCM_CREDENTIALS (SO_PASSCRED, as systemd's PassCredentials= sets), then
// SCM_SECURITY (SO_PASSSEC: the sender's LSM label), then SCM_RIGHTS, then
// SCM_PIDFD (SO_PASSPIDFD, Linux 6.5+: a pidfd, installed for every message).
// The ones before the fds would crowd them out, and a pidfd without room
// sets MSG_CTRUNC although every fd arrived, so there is room for all of
// them. A label longer than kSecurityLabelRoom crowds out fds (MSG_CTRUNC).
constexpr size_t kCredentialsControl = CMSG_SPACE(3 * sizeof(int));  // struct ucred: pid, uid, gid
constexpr size_t kSecurityLabelRoom = 256;
constexpr size_t kSecurityControl = CMSG_SPACE(kSecurityLabelRoom);
constexpr size_t kPidFdControl = CMSG_SPACE(sizeof(int));
constexpr size_t kOtherControl = kCredentialsControl + kSecurityControl + kPidFdControl;

// Room for a full SCM_RIGHTS array plus that, aligned for cmsghdr.
union ControlBuf {
  struct cmsghdr align;
  char buf[CMSG_SPACE(sizeof(int) * kMaxFds) + kOtherControl];
};

inline size_t ElementSize(napi_typedarray_type type) {
  switch (type) {
    case napi_int16_array:
    case napi_uint16_array:
      return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array:
      return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array:
      return 8;
    default:
      return 1;
  }
}

// The bytes of any typed array or DataView, without copying. One
// napi_get_typedarray_info call: this is on every send's path.
inline bool BytesOf(Napi::Value v, char** data, size_t* len) {
  napi_env env = v.Env();
  bool is = false;
  size_t length;
  void* ptr;
  napi_value ab;
  size_t offset;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    if (napi_get_typedarray_info(env, v, &type, &length, &ptr, &ab, &offset) != napi_ok) return false;
    *data = static_cast<char*>(ptr);
    *len = length * ElementSize(type);
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    if (napi_get_dataview_info(env, v, &length, &ptr, &ab, &offset) != napi_ok) return false;
    *data = static_cast<char*>(ptr);
    *len = length;
    return true;
  }
  return false;
}

// Reads an array of fd numbers (at most kMaxFds) into out; returns the count.
inline int FdsOf(Napi::Env env, Napi::Value v, int* out) {
  if (v.IsUndefined() || v.IsNull()) return 0;
  if (!v.IsArray()) throw Napi::TypeError::New(env, "fds must be an array");
  Napi::Array arr = v.As<Napi::Array>();
  uint32_t n = arr.Length();
  if (n > static_cast<uint32_t>(kMaxFds)) throw Napi::RangeError::New(env, "too many fds");
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value fd = arr.Get(i);
    if (!fd.IsNumber()) throw Napi::TypeError::New(env, "fds must hold numbers");
    out[i] = fd.As<Napi::Number>().Int32Value();
  }
  return static_cast<int>(n);
}

// A msghdr over `iovcnt` buffers and `controllen` bytes of room for control
// messages at `control` (none: nullptr, 0).
inline struct msghdr Message(struct iovec* iov, int iovcnt, void* control, size_t controllen) {
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = iovcnt;
  msg.msg_control = control;
  msg.msg_controllen = controllen;
  return msg;
}

// One sendmsg(2) of up to two buffers with fds attached to its first byte.
inline ssize_t SendMsg(int fd, struct iovec* iov, int iovcnt, const int* fds, int nfds, int flags) {
  ControlBuf control;
  struct msghdr msg = Message(iov, iovcnt, nfds > 0 ? control.buf : nullptr, nfds > 0 ? CMSG_SPACE(sizeof(int) * nfds) : 0);
  if (nfds > 0) {
    memset(control.buf, 0, msg.msg_controllen);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, flags | MSG_NOSIGNAL);
  while (n == -1 && errno == EINTR);
  return n;
}

// Whether a control message carries fds: SCM_RIGHTS (the fds sent), and
// SCM_PIDFD (a pidfd of the sender). Every other one (credentials, a
// security label) carries data only.
inline bool CarriesFds(const struct cmsghdr* c) {
  if (c->cmsg_level != SOL_SOCKET) return false;
#ifdef SCM_PIDFD
  if (c->cmsg_type == SCM_PIDFD) return true;
#endif
  return c->cmsg_type == SCM_RIGHTS;
}

// The fds in such a message: an int array, all of its data (a message cut
// short by MSG_CTRUNC has a cmsg_len that covers only what was written).
inline size_t FdCount(const struct cmsghdr* c) {
  return c->cmsg_len < CMSG_LEN(0) ? 0 : (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
}

inline int FdAt(const struct cmsghdr* c, size_t i) {
  int fd;
  memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
  return fd;
}

// Copies the fds of every SCM_RIGHTS message in msg into out (room for
// `cap`). Whatever does not fit is closed, and MSG_CTRUNC set. Every other
// fd that arrived is closed: the pidfd SO_PASSPIDFD adds to each message,
// which is not handed over (peerPidFd gives one), would otherwise leak one
// fd per message. So nothing that arrived is ever lost track of.
inline int TakeFds(struct msghdr* msg, int* out, int cap) {
  int count = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (!CarriesFds(c)) continue;
    bool rights = c->cmsg_type == SCM_RIGHTS;
    for (size_t i = 0, n = FdCount(c); i < n; i++) {
      int fd = FdAt(c, i);
      // A pidfd the kernel could not make (out of fds, say) is a negative
      // errno in its place; there is nothing to close.
      if (fd < 0) continue;
      if (!rights) {
        close(fd);
        continue;
      }
#ifdef SCM_SET_CLOEXEC_AFTER
      fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
      if (count < cap) {
        out[count++] = fd;
      } else {
        close(fd);
        msg->msg_flags |= MSG_CTRUNC;
      }
    }
  }
  return count;
}

inline void CloseAll(const int* fds, size_t n) {
  for (size_t i = 0; i < n; i++) close(fds[i]);
}

}  // namespace
