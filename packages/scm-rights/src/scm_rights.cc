// SCM_RIGHTS for Node: sendmsg/recvmsg carrying file descriptors, peer
// credentials, and a libuv poll handle that drains a socket in batches.
//
// Thin on purpose. This file validates just enough that nothing a caller
// passes can crash the process, makes the syscalls, and reports errno the way
// Node's own system errors look. Everything else (argument policy, message
// framing on stream sockets, what a truncated message means, who closes which
// fd) lives in lib/index.ts.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <vector>

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

// Room, besides the fds, for the control messages a socket may be set to
// add ahead of them: SCM_CREDENTIALS with SO_PASSCRED (systemd's
// PassCredentials=, say), a short SCM_SECURITY label with SO_PASSSEC.
constexpr size_t kOtherControl = CMSG_SPACE(64);

// Room for a full SCM_RIGHTS array plus that, aligned for cmsghdr.
union ControlBuf {
  struct cmsghdr align;
  char buf[CMSG_SPACE(sizeof(int) * kMaxFds) + kOtherControl];
};

// Which file an fd refers to (device and inode), to tell whether a number
// still means the socket we were given. On Linux statx rather than fstat:
// glibc 2.33 gave fstat a new symbol version, and a prebuild linked against
// that would not load on glibc 2.28 to 2.32 (RHEL 8, Debian 11, Ubuntu
// 20.04), which Node 20 supports.
struct FileId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

bool IdentifyFile(int fd, FileId* id) {
#ifdef __linux__
  struct statx sx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_INO, &sx) != 0) return false;
  id->dev = (uint64_t{sx.stx_dev_major} << 32) | sx.stx_dev_minor;
  id->ino = sx.stx_ino;
#else
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  id->dev = static_cast<uint64_t>(st.st_dev);
  id->ino = static_cast<uint64_t>(st.st_ino);
#endif
  return true;
}

// An Error shaped like Node's (fs, net): "EBADF: bad file descriptor,
// sendmsg" with code, errno (negative, as libuv and Node report it) and
// syscall.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  const char* code = uv_err_name(-err);
  Napi::Error e = Napi::Error::New(env, std::string(code) + ": " + uv_strerror(-err) + ", " + syscall);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, code));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

int FdArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}

size_t ElementSize(napi_typedarray_type type) {
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
bool BytesOf(Napi::Value v, char** data, size_t* len) {
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
int FdsOf(Napi::Env env, Napi::Value v, int* out) {
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

// One sendmsg(2) of up to two buffers with fds attached to its first byte.
ssize_t SendMsg(int fd, struct iovec* iov, int iovcnt, const int* fds, int nfds, int flags) {
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = iovcnt;
  ControlBuf control;
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
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

// Copies the fds of every SCM_RIGHTS message in msg into out (room for `cap`).
// Whatever does not fit is closed, and MSG_CTRUNC set, so nothing that
// arrived is ever lost track of.
int TakeFds(struct msghdr* msg, int* out, int cap) {
  int count = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t i = 0; i < n; i++) {
      int fd;
      memcpy(&fd, p + i * sizeof(int), sizeof fd);
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

void CloseAll(const int* fds, size_t n) {
  for (size_t i = 0; i < n; i++) close(fds[i]);
}

// sendFds(fd, data, fds): bytes sent. Blocks if the socket is blocking and
// full; a non-blocking one throws EAGAIN like every other error.
Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0, "socketFd");
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
  int fd = FdArg(info, 0, "socketFd");
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
  int fd = FdArg(info, 0, "socketFd");
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
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for exactly maxFds would not do: credentials come first and would
  // take it, and the fds would be cut off (MSG_CTRUNC). The kernel may then
  // install a few more than maxFds; TakeFds closes those and sets MSG_CTRUNC.
  ControlBuf control;
  msg.msg_control = control.buf;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * maxFds) + kOtherControl;
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
  int fd = FdArg(info, 0, "socketFd");
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
  int fd = FdArg(info, 0, "socketFd");
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
  int fd = FdArg(info, 0, "socketFd");
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
  shutdown(FdArg(info, 0, "fd"), SHUT_WR);
  return info.Env().Undefined();
}

// Every open Poller's private duplicate, process-wide (worker threads share
// the fd table), until it is closed. Such a number is nobody's to wrap:
// an FdSocket made on it would close it at close(), under the Poller whose
// poll watches it, and libuv aborts the process at that poll's next
// epoll_ctl (or its sends hit EBADF, or a stranger that reused the number).
// So a new Poller refuses it. Closed and unlisted under one lock, so a
// Poller made meanwhile sees either a duplicate still in use or a free
// number. The set exists only while it has members: nothing is left to
// free when Node unloads the addon with its last worker.
std::mutex privateLock;
std::set<int>* privateFds = nullptr;

// The private duplicate of `fd` for a new Poller (throws if there is none).
int DupPrivate(Napi::Env env, int fd) {
  std::lock_guard<std::mutex> guard(privateLock);
  if (privateFds != nullptr && privateFds->count(fd) != 0) {
    Napi::TypeError e = Napi::TypeError::New(
        env, "The \"fd\" argument is invalid: fd " + std::to_string(fd) +
                 " is the private duplicate an open FdSocket works through, not a socket of yours");
    e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
    throw e;
  }
  int io = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (io == -1) throw ErrnoError(env, errno, "fcntl");
  if (privateFds == nullptr) privateFds = new std::set<int>;
  privateFds->insert(io);
  return io;
}

void ClosePrivate(int io) {
  std::lock_guard<std::mutex> guard(privateLock);
  close(io);
  privateFds->erase(io);
  if (privateFds->empty()) {
    delete privateFds;
    privateFds = nullptr;
  }
}

// Poller: a uv_poll_t over the socket that, on each readable wakeup, loops
// recvmsg until EAGAIN (or the batch is full) and hands JavaScript the whole
// batch in one call: the bytes in one Buffer, and per chunk its length, fd
// count and msg_flags in a shared Int32Array, the fds in another. One
// crossing per wakeup instead of one per message.
//
// It also keeps the list of fds held on JavaScript's behalf: those received
// and not yet handed to a consumer, and the dups a queued send keeps. When
// the thread's environment is torn down (a worker ending, process.exit() in
// a listener, worker.terminate()) no JavaScript runs to close them, so the
// teardown hook does; close() does too.
class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {
                           InstanceMethod<&Poller::SetEvents>("setEvents"),
                           InstanceMethod<&Poller::Ref>("ref"),
                           InstanceMethod<&Poller::Unref>("unref"),
                           InstanceMethod<&Poller::Close>("close"),
                           InstanceMethod<&Poller::Io>("io"),
                           InstanceMethod<&Poller::Dup>("dup"),
                           InstanceMethod<&Poller::Release>("release"),
                           InstanceMethod<&Poller::Drop>("drop"),
                       });
  }

  // new Poller(fd, chunkBytes, scratchBytes, meta: Int32Array, fds: Int32Array, onRead, onWrite)
  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 7 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() ||
        !info[3].IsTypedArray() || !info[4].IsTypedArray() || !info[5].IsFunction() || !info[6].IsFunction()) {
      throw Napi::TypeError::New(env, "Poller(fd, chunkBytes, scratchBytes, meta, fds, onRead, onWrite)");
    }
    Napi::TypedArray meta = info[3].As<Napi::TypedArray>();
    Napi::TypedArray fds = info[4].As<Napi::TypedArray>();
    if (meta.TypedArrayType() != napi_int32_array || fds.TypedArrayType() != napi_int32_array ||
        meta.ElementLength() < 3 || fds.ElementLength() < static_cast<size_t>(kMaxFds)) {
      throw Napi::TypeError::New(env, "meta and fds must be Int32Arrays (meta >= 3, fds >= 253 entries)");
    }
    int64_t chunk = info[1].As<Napi::Number>().Int64Value();
    int64_t scratch = info[2].As<Napi::Number>().Int64Value();
    if (chunk < 1 || scratch < chunk || scratch > (int64_t{1} << 31)) throw Napi::RangeError::New(env, "bad buffer sizes");

    int fd = info[0].As<Napi::Number>().Int32Value();
    chunk_ = static_cast<size_t>(chunk);
    // Uninitialised on purpose: pages are only touched when bytes arrive.
    scratchSize_ = static_cast<size_t>(scratch);
    scratch_.reset(new (std::nothrow) char[scratchSize_]);
    if (!scratch_) throw ErrnoError(env, ENOMEM, "malloc");
    meta_ = meta.As<Napi::Int32Array>().Data();
    metaCap_ = meta.ElementLength() / 3;
    fds_ = fds.As<Napi::Int32Array>().Data();
    fdsCap_ = fds.ElementLength();

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
    // The caller's number is public (FdSocket's `fd`), and nothing stops a
    // caller from closing it by hand. Had libuv polled that number, its next
    // epoll_ctl would fail with EBADF and libuv would abort() the process.
    // So the socket is polled, read and written through a private
    // close-on-exec duplicate nobody else knows the number of (and that no
    // other Poller may take: see privateFds).
    int io = DupPrivate(env, fd);
    handle_ = new Handle();
    handle_->owner = this;
    handle_->poll.data = handle_;
    handle_->probe.data = handle_;
    // A probe on the public number, never started: libuv refuses (EEXIST)
    // an fd another handle of this loop watches, say a reading net.Socket,
    // which would race us for the socket's messages (and drop their fds).
    int err = uv_poll_init(loop, &handle_->probe, fd);
    if (err == 0) {
      err = uv_poll_init(loop, &handle_->poll, io);
      if (err != 0) {
        handle_->owner = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&handle_->probe), OnClosed);
        handle_ = nullptr;
      }
    } else {
      delete handle_;  // never initialised, so never uv_close'd
      handle_ = nullptr;
    }
    if (err != 0) {
      ClosePrivate(io);
      throw ErrnoError(env, -err, "uv_poll_init");
    }
    handle_->open = 2;
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_->probe), OnClosed);
    // When this thread's environment goes away (a worker thread ending, or
    // the process), Node unloads this addon once its cleanup hooks are done.
    // A close callback still pending then would jump into unmapped code, so
    // the hook closes the handle and holds the teardown until its callbacks.
    if (napi_add_async_cleanup_hook(env, OnTeardown, handle_, &handle_->hook) != napi_ok) {
      handle_->owner = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), OnClosed);
      handle_ = nullptr;
      ClosePrivate(io);
      throw Napi::Error::New(env, "napi_add_async_cleanup_hook failed");
    }
    metaRef_ = Napi::Persistent(info[3].As<Napi::Object>());
    fdsRef_ = Napi::Persistent(info[4].As<Napi::Object>());
    onRead_ = Napi::Persistent(info[5].As<Napi::Function>());
    onWrite_ = Napi::Persistent(info[6].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "FdSocket");
    // Only now are the fds ours: had anything above thrown, the destructor
    // must not close the caller's fd.
    identified_ = IdentifyFile(fd, &file_);
    fd_ = fd;
    io_ = io;
  }

  ~Poller() override { Shutdown(); }

 private:
  struct Handle {
    uv_poll_t poll;  // first, so a uv_poll_t* is a Handle*
    uv_poll_t probe;  // the EEXIST check on the public number; closed at once
    Poller* owner;
    int open = 1;  // libuv handles not yet through their close callback
    napi_async_cleanup_hook_handle hook = nullptr;
  };

  // The handle's memory goes when libuv is done with both; so does the
  // teardown hook, which lets a teardown waiting on this handle finish.
  static void OnClosed(uv_handle_t* uv) {
    Handle* h = static_cast<Handle*>(uv->data);
    if (--h->open > 0) return;
    if (h->hook != nullptr) napi_remove_async_cleanup_hook(h->hook);
    delete h;
  }

  // The environment is being torn down with this socket still open (no
  // JavaScript runs any more): close the fd and the handle now. A handle
  // already closing finishes in OnClosed.
  static void OnTeardown(napi_async_cleanup_hook_handle, void* arg) {
    Handle* h = static_cast<Handle*>(arg);
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&h->poll))) return;
    if (h->owner != nullptr) h->owner->Shutdown();
    else uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), OnClosed);
  }

  // setEvents(readable, writable): what the poll watches; nothing stops it.
  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr) return env.Undefined();
    int events = (info[0].ToBoolean() ? UV_READABLE : 0) | (info[1].ToBoolean() ? UV_WRITABLE : 0);
    if (events == events_) return env.Undefined();
    int err = events == 0 ? uv_poll_stop(&handle_->poll) : uv_poll_start(&handle_->poll, events, OnPoll);
    if (err != 0) throw ErrnoError(env, -err, "uv_poll_start");
    events_ = events;
    return env.Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
    return info.Env().Undefined();
  }

  // io(): the private duplicate that sends go through; -1 once closed.
  Napi::Value Io(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), io_); }

  // close(): stop polling, close the socket fd (it is ours) and every fd
  // still held, drop the callbacks. Safe to call from inside onRead/onWrite and more than once.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    onRead_.Reset();
    onWrite_.Reset();
    metaRef_.Reset();
    fdsRef_.Reset();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (handle_ != nullptr) {
      // uv_poll_stop takes the fd out of epoll, so closing it next is safe;
      // the handle's memory goes when libuv is done with it.
      uv_poll_stop(&handle_->poll);
      handle_->owner = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll), OnClosed);
      handle_ = nullptr;
    }
    if (io_ >= 0) {
      ClosePrivate(io_);
      io_ = -1;
    }
    // The public number only while it is still the socket we were given: a
    // caller who closed it by hand may have had it reused by another file.
    if (fd_ >= 0) {
      FileId now;
      if (!identified_ || (IdentifyFile(fd_, &now) && now == file_)) close(fd_);
      fd_ = -1;
    }
    if (heldCount_ > 0) {
      for (size_t fd = 0; fd < held_.size(); fd++) {
        if (held_[fd]) close(static_cast<int>(fd));
      }
      heldCount_ = 0;
    }
    held_.clear();
    events_ = 0;
  }

  // The held list is a bitmap over fd numbers: fds are small integers, and
  // holding, releasing and dropping are then O(1) whatever the order.
  void Hold(int fd) {
    if (fd < 0) return;
    size_t i = static_cast<size_t>(fd);
    if (i >= held_.size()) held_.resize(std::max(i + 1, held_.size() * 2));
    if (!held_[i]) heldCount_++;
    held_[i] = true;
  }

  // False when fd is not held (released, dropped, or closed with the socket).
  bool Unhold(int fd) {
    size_t i = static_cast<size_t>(fd);
    if (fd < 0 || i >= held_.size() || !held_[i]) return false;
    held_[i] = false;
    heldCount_--;
    return true;
  }

  // Closes fd only while it is held, so a second drop, or one after close(),
  // cannot close a number the process has since given to another file.
  void DropOne(int fd) {
    if (Unhold(fd)) close(fd);
  }

  // Calls fn with fds, one number or an array of them. One number is the
  // common case (a message with one fd), handed over per message, so it
  // costs a single Node-API call.
  template <typename Fn>
  static void EachFd(const Napi::CallbackInfo& info, Fn fn) {
    int32_t one;
    if (info.Length() >= 1 && napi_get_value_int32(info.Env(), info[0], &one) == napi_ok) {
      fn(one);
      return;
    }
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "fds must be a number or an array");
    Napi::Array arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0, n = arr.Length(); i < n; i++) {
      Napi::Value v = arr.Get(i);
      if (v.IsNumber()) fn(v.As<Napi::Number>().Int32Value());
    }
  }

  // dup(fd): an F_DUPFD_CLOEXEC copy, held: a queued send's own fds, so the
  // caller may close theirs as soon as send() returns.
  Napi::Value Dup(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = FdArg(info, 0, "fd");
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup == -1) throw ErrnoError(env, errno, "fcntl");
    if (io_ < 0) {
      close(dup);  // closed: nothing would ever send or drop it
      throw ErrnoError(env, EBADF, "fcntl");
    }
    Hold(dup);
    return Napi::Number::New(env, dup);
  }

  // release(fds): (a number or an array) no longer held; they are a consumer's now.
  Napi::Value Release(const Napi::CallbackInfo& info) {
    EachFd(info, [this](int fd) { Unhold(fd); });
    return info.Env().Undefined();
  }

  // drop(fds): close(2) each fd that is still held. Not fs.closeSync: in a
  // worker thread Node warns about every fd fs did not open itself.
  Napi::Value Drop(const Napi::CallbackInfo& info) {
    EachFd(info, [this](int fd) { DropOne(fd); });
    return info.Env().Undefined();
  }

  static void OnPoll(uv_poll_t* poll, int status, int events) {
    Handle* h = reinterpret_cast<Handle*>(poll);
    if (h->owner == nullptr) return;
    Poller* self = h->owner;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    bool rearm = false;
    if (status < 0) {
      // libuv reports POLLERR as UV_EBADF and stops the handle. The socket's
      // own error (ECONNRESET when the peer left with our messages unread,
      // say) is the one to report, and recvmsg/sendmsg give it, reads after
      // any data still queued. So act as if ready for whatever we watch.
      events = self->events_;
      rearm = true;
    }
    if (events & UV_READABLE) self->ReadBatch();
    // onRead may have closed the socket or dropped write interest.
    if (h->owner != nullptr && (events & UV_WRITABLE) && (self->events_ & UV_WRITABLE)) self->Call(self->onWrite_, 0, nullptr);
    if (rearm && h->owner != nullptr && self->events_ != 0) {
      int err = uv_poll_start(&h->poll, self->events_, OnPoll);
      if (err != 0) self->Deliver(0, 0, err);
    }
  }

  void ReadBatch() {
    char* buf = scratch_.get();
    size_t used = 0;
    size_t chunks = 0;
    size_t nfds = 0;
    int status = 0;  // 0: more may come; 1: end of file; < 0: -errno
    while (chunks < metaCap_ && scratchSize_ - used >= chunk_ && fdsCap_ - nfds >= static_cast<size_t>(kMaxFds)) {
      struct iovec iov = {buf + used, chunk_};
      struct msghdr msg;
      memset(&msg, 0, sizeof msg);
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      ControlBuf control;
      msg.msg_control = control.buf;
      msg.msg_controllen = sizeof control.buf;
      ssize_t n = recvmsg(io_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n == -1) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) status = -errno;
        break;
      }
      int got = TakeFds(&msg, fds_ + nfds, kMaxFds);
      for (int i = 0; i < got; i++) Hold(fds_[nfds + i]);
      if (n == 0 && got == 0 && AtEof()) {
        status = 1;
        break;
      }
      meta_[3 * chunks] = static_cast<int32_t>(n);
      meta_[3 * chunks + 1] = got;
      meta_[3 * chunks + 2] = msg.msg_flags;
      chunks++;
      nfds += got;
      used += static_cast<size_t>(n);
      // A truncated message ends the socket; read nothing after it.
      if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) break;
    }
    if (chunks == 0 && status == 0) return;
    Deliver(chunks, used, status);
  }

  // A zero-byte read without fds is end-of-file on a stream socket, but on a
  // seqpacket socket it may also be an empty message. The peer having shut
  // down its side tells the two apart, unless messages are still queued: the
  // kernel reports end of file only once the queue is empty, so a zero-byte
  // read with anything behind it was an empty message, and treating it as
  // end of file would silently drop what follows. SIOCINQ counts every
  // queued byte on a seqpacket socket; a peek without room for control data
  // sees fds on the next message (MSG_CTRUNC) without installing them. Only
  // a run of empty fd-less messages right before the end stays ambiguous.
  bool AtEof() {
    struct pollfd p = {io_, POLLRDHUP, 0};
    int r = poll(&p, 1, 0);
    if (r != 1 || (p.revents & (POLLRDHUP | POLLHUP)) == 0) return false;
    int queued = 0;
    if (ioctl(io_, FIONREAD, &queued) == 0 && queued > 0) return false;
    char byte;
    struct iovec iov = {&byte, 1};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n;
    do n = recvmsg(io_, &msg, MSG_PEEK | MSG_DONTWAIT);
    while (n == -1 && errno == EINTR);
    return n == 0 && (msg.msg_flags & MSG_CTRUNC) == 0;
  }

  // Everything from here to JavaScript uses the C API and checks statuses:
  // while a worker thread is being terminated (process.exit() in a listener,
  // worker.terminate()) every call into JavaScript fails with no exception
  // to show, and node-addon-api's throwing wrappers would turn that into a
  // fatal error for the whole process.
  void Deliver(size_t chunks, size_t used, int status) {
    napi_env env = Env();
    napi_value data;
    napi_get_undefined(env, &data);
    if (used > 0) {
      void* copy;
      if (napi_create_buffer_copy(env, used, scratch_.get(), &copy, &data) != napi_ok) {
        // No memory for the batch's bytes (or no JavaScript any more): the
        // batch's fds would reach no one. Close them and fail the socket.
        ClearException(env);
        size_t nfds = 0;
        for (size_t i = 0; i < chunks; i++) nfds += static_cast<size_t>(meta_[3 * i + 1]);
        for (size_t i = 0; i < nfds; i++) DropOne(fds_[i]);
        chunks = 0;
        status = -ENOMEM;
        napi_get_undefined(env, &data);
      }
    }
    napi_value args[3];
    napi_create_double(env, static_cast<double>(chunks), &args[0]);
    args[1] = data;
    napi_create_int32(env, status, &args[2]);
    Call(onRead_, 3, args);
  }

  static napi_value ClearException(napi_env env) {
    bool pending = false;
    napi_value err = nullptr;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &err);
    return err;
  }

  // Calls into JavaScript from the event loop, with the async context of
  // this socket, so microtasks (resolved sends, awaited messages) run after.
  // An exception thrown by a listener becomes an uncaught exception, as it
  // would from a net.Socket 'data' listener.
  void Call(Napi::FunctionReference& fn, size_t argc, const napi_value* argv) {
    if (fn.IsEmpty()) return;
    napi_env env = Env();
    napi_value recv;
    napi_value func;
    napi_value result;
    napi_ref self = static_cast<const Napi::Reference<Napi::Object>&>(*this);
    if (napi_get_reference_value(env, self, &recv) != napi_ok || recv == nullptr ||
        napi_get_reference_value(env, fn, &func) != napi_ok || func == nullptr) {
      return;
    }
    if (napi_make_callback(env, *context_, recv, func, argc, argv, &result) == napi_ok) return;
    napi_value err = ClearException(env);
    if (err != nullptr) napi_fatal_exception(env, err);
  }

  int fd_ = -1;  // the caller's number
  int io_ = -1;  // our private duplicate
  FileId file_;
  bool identified_ = false;
  size_t chunk_ = 0;
  std::unique_ptr<char[]> scratch_;
  size_t scratchSize_ = 0;
  int32_t* meta_ = nullptr;
  size_t metaCap_ = 0;
  int32_t* fds_ = nullptr;
  size_t fdsCap_ = 0;
  int events_ = 0;
  Handle* handle_ = nullptr;
  std::vector<bool> held_;
  size_t heldCount_ = 0;
  Napi::ObjectReference metaRef_;
  Napi::ObjectReference fdsRef_;
  Napi::FunctionReference onRead_;
  Napi::FunctionReference onWrite_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("trySend", Napi::Function::New(env, TrySend, "trySend"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo, "socketInfo"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("peerPidFd", Napi::Function::New(env, PeerPidFd, "peerPidFd"));
  exports.Set("closeFds", Napi::Function::New(env, CloseFds, "closeFds"));
  exports.Set("shutdownWrite", Napi::Function::New(env, ShutdownWrite, "shutdownWrite"));
  exports.Set("Poller", Poller::Define(env));
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
