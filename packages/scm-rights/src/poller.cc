// The Poller's poll, from its constructor to Shutdown(): see poller.h.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stdint.h>

#include <memory>

#include "internal/errors.h"
#include "internal/handles.h"
#include "poller.h"

namespace scm {

using folk::ErrnoError;

// The libuv handles (see LoopHandles).
struct Poller::PollBlock : folk::LoopHandles {
  using LoopHandles::LoopHandles;
  uv_poll_t poll;
  uv_poll_t probe;  // the EEXIST check on the public number; closed at once
  Poller* owner = nullptr;  // null once the Poller let go of it
};

Napi::Function Poller::Define(Napi::Env env) {
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
Poller::Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsTypedArray() || !info[4].IsTypedArray() || !info[5].IsFunction() || !info[6].IsFunction()) {
    throw Napi::TypeError::New(env, "Poller(fd, chunkBytes, scratchBytes, meta, fds, onRead, onWrite)");
  }
  batch_.Take(info);
  int fd = info[0].As<Napi::Number>().Int32Value();
  fd_.Open(env, this, fd, "FdSocket", "a socket");
  PollBlock* block = nullptr;
  try {
    block = OpenPoll(env, fd);
    onRead_ = Napi::Persistent(info[5].As<Napi::Function>());
    onWrite_ = Napi::Persistent(info[6].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "FdSocket");
  } catch (...) {
    if (block != nullptr) block->Close(&block->poll);
    fd_.Release();
    throw;
  }
  // Only now is the caller's number ours: had anything above thrown, it
  // stayed the caller's.
  block->owner = this;
  handle_ = block;
  fd_.Own(fd);
}

// The poll over the private duplicate, not started. Throws when libuv
// cannot have it.
Poller::PollBlock* Poller::OpenPoll(Napi::Env env, int fd) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
  PollBlock* block = new PollBlock(fd_.resources());
  // A probe on the public number, never started: libuv refuses (EEXIST)
  // an fd another handle of this loop watches, say a reading net.Socket,
  // which would race us for the socket's messages (and drop their fds).
  int err = uv_poll_init(loop, &block->probe, fd);
  if (err != 0) {
    delete block;  // nothing adopted yet
  } else {
    block->Adopt(&block->probe);
    err = uv_poll_init(loop, &block->poll, fd_.io());
    if (err == 0) block->Adopt(&block->poll);
    block->Close(&block->probe);  // with the block, if the poll failed
  }
  if (err != 0) throw ErrnoError(env, -err, "uv_poll_init");
  return block;
}

// setEvents(readable, writable, fdBudget): what the poll watches; nothing
// stops it. fdBudget: the fds the next reads may bring in (Batch::SetFdBudget).
Napi::Value Poller::SetEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (handle_ == nullptr) return env.Undefined();
  if (info.Length() > 2 && info[2].IsNumber()) {
    int64_t budget = info[2].As<Napi::Number>().Int64Value();
    batch_.SetFdBudget(budget < 1 ? 1 : static_cast<size_t>(budget));
  }
  int events = (info[0].ToBoolean() ? UV_READABLE : 0) | (info[1].ToBoolean() ? UV_WRITABLE : 0);
  if (events == events_) return env.Undefined();
  int err = events == 0 ? uv_poll_stop(&handle_->poll) : uv_poll_start(&handle_->poll, events, OnPoll);
  if (err != 0) throw ErrnoError(env, -err, "uv_poll_start");
  events_ = events;
  return env.Undefined();
}

Napi::Value Poller::Ref(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  return info.Env().Undefined();
}

Napi::Value Poller::Unref(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&handle_->poll));
  return info.Env().Undefined();
}

// io(): the private duplicate that sends go through; -1 once closed.
Napi::Value Poller::Io(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.io()); }

// close(): stop polling, close the socket fd (it is ours) and every fd
// still held, drop the callbacks. Safe to call from inside onRead/onWrite and more than once.
Napi::Value Poller::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  onRead_.Reset();
  onWrite_.Reset();
  batch_.Unpin();
  return info.Env().Undefined();
}

// Gives up everything: the poll, every held fd, then what fd_ holds (the
// private duplicate, the caller's number while it is still the same
// socket, the place in the environment's list). Idempotent; safe from the
// finalizer.
void Poller::Shutdown() {
  if (handle_ != nullptr) {
    // uv_poll_stop takes the fd out of epoll, so closing it next is safe;
    // the handle's memory goes when libuv is done with it.
    uv_poll_stop(&handle_->poll);
    handle_->owner = nullptr;
    handle_->Close(&handle_->poll);
    handle_ = nullptr;
  }
  held_.CloseAll();
  events_ = 0;
  fd_.Release();
}

void Poller::OnPoll(uv_poll_t* poll, int status, int events) {
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

// Calls into JavaScript from the event loop, with the async context of
// this socket, so microtasks (resolved sends, awaited messages) run after.
void Poller::Call(Napi::FunctionReference& fn, size_t argc, const napi_value* argv) {
  if (fn.IsEmpty()) return;
  napi_ref self = static_cast<const Napi::Reference<Napi::Object>&>(*this);
  folk::CallFromLoop(Env(), *context_, self, fn, argc, argv);
}

Napi::Function DefinePoller(Napi::Env env) {
  folk::EnvResources::Install(env);
  return Poller::Define(env);
}

}  // namespace scm
