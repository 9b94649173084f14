// The Poller: see the comment on the class.
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
#include "internal/handles.h"
#include "message.h"
#include "poller.h"

namespace {

using folk::ErrnoError;
using folk::Int32Arg;

// Poller: a uv_poll_t over the socket that, on each readable wakeup, loops
// recvmsg until EAGAIN (or the batch is full) and hands JavaScript the whole
// batch in one call: the bytes in one Buffer, and per chunk its length, fd
// count and msg_flags in a shared Int32Array, the fds in another. One
// crossing per wakeup instead of one per message.
//
// It owns the socket as internal/handles.h describes (the caller's number
// and a private duplicate that the poll, reads and writes use), and it
// keeps the fds held on JavaScript's behalf: those received and not yet
// handed to a consumer, and the dups a queued send keeps. close(), the
// finalizer and the end of the thread's environment (a worker ending,
// process.exit() in a listener, worker.terminate()) all end in Shutdown(),
// which gives up all of it; at the end of the environment no JavaScript
// would ever close the held fds.
class Poller : public Napi::ObjectWrap<Poller>, public folk::LoopResource {
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
    TakeBuffers(info);
    int fd = info[0].As<Napi::Number>().Int32Value();
    folk::EnvResources* resources = folk::EnvResources::Of(env);
    int io = folk::DupPrivate(env, fd, "FdSocket", "a socket");
    PollBlock* block = OpenPoll(env, resources, fd, io);
    try {
      metaRef_ = Napi::Persistent(info[3].As<Napi::Object>());
      fdsRef_ = Napi::Persistent(info[4].As<Napi::Object>());
      onRead_ = Napi::Persistent(info[5].As<Napi::Function>());
      onWrite_ = Napi::Persistent(info[6].As<Napi::Function>());
      context_ = std::make_unique<Napi::AsyncContext>(env, "FdSocket");
      resources->Join(this);
    } catch (...) {
      block->Close(&block->poll);
      folk::ClosePrivate(io);
      throw;
    }
    // Only now are the fds ours: had anything above thrown, they stayed the
    // caller's.
    block->owner = this;
    handle_ = block;
    resources_ = resources;
    io_ = io;
    fd_.Take(fd);
  }

  ~Poller() override { Shutdown(); }

  void OnTeardown() override { Shutdown(); }

 private:
  // The libuv handles (see LoopHandles).
  struct PollBlock : folk::LoopHandles {
    using LoopHandles::LoopHandles;
    uv_poll_t poll;
    uv_poll_t probe;  // the EEXIST check on the public number; closed at once
    Poller* owner = nullptr;  // null once the Poller let go of it
  };

  // The batch buffers: the scratch the bytes are read into, and the two
  // Int32Arrays JavaScript reads the chunks' meta and fds from.
  void TakeBuffers(const Napi::CallbackInfo& info) {
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
    if (!scratch_) throw ErrnoError(env, ENOMEM, "malloc");
    meta_ = meta.As<Napi::Int32Array>().Data();
    metaCap_ = meta.ElementLength() / 3;
    fds_ = fds.As<Napi::Int32Array>().Data();
    fdsCap_ = fds.ElementLength();
  }

  // The poll over the private duplicate `io`, not started. Throws (and
  // closes `io`) when libuv cannot have it.
  PollBlock* OpenPoll(Napi::Env env, folk::EnvResources* resources, int fd, int io) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      folk::ClosePrivate(io);
      throw Napi::Error::New(env, "no event loop");
    }
    PollBlock* block = new PollBlock(resources);
    // A probe on the public number, never started: libuv refuses (EEXIST)
    // an fd another handle of this loop watches, say a reading net.Socket,
    // which would race us for the socket's messages (and drop their fds).
    int err = uv_poll_init(loop, &block->probe, fd);
    if (err != 0) {
      delete block;  // nothing adopted yet
    } else {
      block->Adopt(&block->probe);
      err = uv_poll_init(loop, &block->poll, io);
      if (err == 0) block->Adopt(&block->poll);
      block->Close(&block->probe);  // with the block, if the poll failed
    }
    if (err != 0) {
      folk::ClosePrivate(io);
      throw ErrnoError(env, -err, "uv_poll_init");
    }
    return block;
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

  // Gives up everything: the poll, the private duplicate, the caller's
  // number while it is still the same socket, every held fd; then leaves
  // the environment's resources. Idempotent; safe from the finalizer.
  void Shutdown() {
    if (handle_ != nullptr) {
      // uv_poll_stop takes the fd out of epoll, so closing it next is safe;
      // the handle's memory goes when libuv is done with it.
      uv_poll_stop(&handle_->poll);
      handle_->owner = nullptr;
      handle_->Close(&handle_->poll);
      handle_ = nullptr;
    }
    if (io_ >= 0) {
      folk::ClosePrivate(io_);
      io_ = -1;
    }
    fd_.Close();
    if (heldCount_ > 0) {
      for (size_t fd = 0; fd < held_.size(); fd++) {
        if (held_[fd]) close(static_cast<int>(fd));
      }
      heldCount_ = 0;
    }
    held_.clear();
    events_ = 0;
    if (resources_ != nullptr) {
      resources_->Leave(this);
      resources_ = nullptr;
    }
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
    int fd = Int32Arg(info, 0, "fd must be a number");
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
    PollBlock* h = folk::LoopHandles::Of<PollBlock>(poll);
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
      ControlBuf control;
      struct msghdr msg = Message(&iov, 1, control.buf, sizeof control.buf);
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
    struct msghdr msg = Message(&iov, 1, nullptr, 0);
    ssize_t n;
    do n = recvmsg(io_, &msg, MSG_PEEK | MSG_DONTWAIT);
    while (n == -1 && errno == EINTR);
    return n == 0 && (msg.msg_flags & MSG_CTRUNC) == 0;
  }

  // From here to JavaScript through the C API, statuses checked (see
  // CallFromLoop).
  void Deliver(size_t chunks, size_t used, int status) {
    napi_env env = Env();
    napi_value data;
    napi_get_undefined(env, &data);
    if (used > 0) {
      void* copy;
      if (napi_create_buffer_copy(env, used, scratch_.get(), &copy, &data) != napi_ok) {
        // No memory for the batch's bytes (or no JavaScript any more): the
        // batch's fds would reach no one. Close them and fail the socket.
        folk::TakeException(env);
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

  // Calls into JavaScript from the event loop, with the async context of
  // this socket, so microtasks (resolved sends, awaited messages) run after.
  void Call(Napi::FunctionReference& fn, size_t argc, const napi_value* argv) {
    if (fn.IsEmpty()) return;
    napi_ref self = static_cast<const Napi::Reference<Napi::Object>&>(*this);
    folk::CallFromLoop(Env(), *context_, self, fn, argc, argv);
  }

  folk::PublicFd fd_;  // the caller's number
  int io_ = -1;        // our private duplicate
  folk::EnvResources* resources_ = nullptr;  // null once shut down
  size_t chunk_ = 0;
  std::unique_ptr<char[]> scratch_;
  size_t scratchSize_ = 0;
  int32_t* meta_ = nullptr;
  size_t metaCap_ = 0;
  int32_t* fds_ = nullptr;
  size_t fdsCap_ = 0;
  int events_ = 0;
  PollBlock* handle_ = nullptr;
  std::vector<bool> held_;
  size_t heldCount_ = 0;
  Napi::ObjectReference metaRef_;
  Napi::ObjectReference fdsRef_;
  Napi::FunctionReference onRead_;
  Napi::FunctionReference onWrite_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

}  // namespace

Napi::Function scm::DefinePoller(Napi::Env env) {
  folk::EnvResources::Install(env);
  return Poller::Define(env);
}
