// The Poller's receive path (see poller.h): on each readable wakeup, recvmsg
// into a Batch until EAGAIN or the batch is full, then one call to onRead.
#include <napi.h>

#include <errno.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <new>

#include "internal/errors.h"
#include "internal/handles.h"
#include "message.h"
#include "poller.h"
#include "receive.h"

namespace scm {

void Batch::Take(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::TypedArray meta = info[3].As<Napi::TypedArray>();
  Napi::TypedArray fds = info[4].As<Napi::TypedArray>();
  if (meta.TypedArrayType() != napi_int32_array || fds.TypedArrayType() != napi_int32_array ||
      meta.ElementLength() < 3 || fds.ElementLength() < static_cast<size_t>(kMaxFds)) {
    throw Napi::TypeError::New(env, "meta and fds must be Int32Arrays (meta >= 3, fds >= 253 entries)");
  }
  int64_t chunk = info[1].As<Napi::Number>().Int64Value();
  int64_t scratch = info[2].As<Napi::Number>().Int64Value();
  if (chunk < 1 || scratch < chunk || scratch > (int64_t{1} << 31)) throw Napi::RangeError::New(env, "bad buffer sizes");
  chunk_ = static_cast<size_t>(chunk);
  // Uninitialised on purpose: pages are only touched when bytes arrive.
  scratchSize_ = static_cast<size_t>(scratch);
  scratch_.reset(new (std::nothrow) char[scratchSize_]);
  if (!scratch_) throw folk::ErrnoError(env, ENOMEM, "malloc");
  meta_ = meta.As<Napi::Int32Array>().Data();
  metaCap_ = meta.ElementLength() / 3;
  fds_ = fds.As<Napi::Int32Array>().Data();
  fdsCap_ = fds.ElementLength();
  metaRef_ = Napi::Persistent(info[3].As<Napi::Object>());
  fdsRef_ = Napi::Persistent(info[4].As<Napi::Object>());
}

void Batch::Unpin() {
  metaRef_.Reset();
  fdsRef_.Reset();
}

int Batch::Read(int io, HeldFds* held, size_t* chunks_out, size_t* used_out) {
  char* buf = scratch_.get();
  size_t used = 0;
  size_t chunks = 0;
  size_t nfds = 0;
  int status = 0;  // 0: more may come; 1: end of file; < 0: -errno
  while (chunks < metaCap_ && scratchSize_ - used >= chunk_ && fdsCap_ - nfds >= static_cast<size_t>(kMaxFds) &&
         nfds < fdBudget_) {
    struct iovec iov = {buf + used, chunk_};
    ControlBuf control;
    struct msghdr msg = Message(&iov, 1, control.buf, sizeof control.buf);
    ssize_t n = recvmsg(io, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n == -1) {
      if (errno == EINTR) continue;
      // The peer closed with messages of ours unread. On a seqpacket
      // socket the kernel says so once, before what the peer sent before
      // leaving, which is still queued: read that first, report the reset
      // at its end.
      if (errno == ECONNRESET && !reset_) {
        reset_ = true;
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) status = -errno;
      break;
    }
    int got = TakeFds(&msg, fds_ + nfds, kMaxFds);
    for (int i = 0; i < got; i++) held->Hold(fds_[nfds + i]);
    if (n == 0 && got == 0 && AtEof(io)) {
      status = reset_ ? -ECONNRESET : 1;
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
  *chunks_out = chunks;
  *used_out = used;
  return status;
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
bool Batch::AtEof(int io) {
  struct pollfd p = {io, POLLRDHUP, 0};
  int r = poll(&p, 1, 0);
  if (r != 1 || (p.revents & (POLLRDHUP | POLLHUP)) == 0) return false;
  int queued = 0;
  if (ioctl(io, FIONREAD, &queued) == 0 && queued > 0) return false;
  char byte;
  struct iovec iov = {&byte, 1};
  struct msghdr msg = Message(&iov, 1, nullptr, 0);
  ssize_t n;
  do n = recvmsg(io, &msg, MSG_PEEK | MSG_DONTWAIT);
  while (n == -1 && errno == EINTR);
  return n == 0 && (msg.msg_flags & MSG_CTRUNC) == 0;
}

void Batch::DropFds(size_t chunks, HeldFds* held) const {
  size_t nfds = 0;
  for (size_t i = 0; i < chunks; i++) nfds += static_cast<size_t>(meta_[3 * i + 1]);
  for (size_t i = 0; i < nfds; i++) held->Drop(fds_[i]);
}

void Poller::ReadBatch() {
  size_t chunks = 0;
  size_t used = 0;
  int status = batch_.Read(fd_.io(), &held_, &chunks, &used);
  if (chunks == 0 && status == 0) return;
  Deliver(chunks, used, status);
}

// From here to JavaScript through the C API, statuses checked (see
// CallFromLoop).
void Poller::Deliver(size_t chunks, size_t used, int status) {
  napi_env env = Env();
  napi_value data;
  napi_get_undefined(env, &data);
  if (used > 0) {
    void* copy;
    if (napi_create_buffer_copy(env, used, batch_.bytes(), &copy, &data) != napi_ok) {
      // No memory for the batch's bytes (or no JavaScript any more): the
      // batch's fds would reach no one. Close them and fail the socket.
      folk::TakeException(env);
      batch_.DropFds(chunks, &held_);
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

}  // namespace scm
