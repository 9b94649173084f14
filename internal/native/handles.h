// Native handles: JavaScript objects that own fds and watch them on their
// thread's event loop. pidfd's Handle (behind PidFd) and scm-rights' Poller
// (behind FdSocket) are built from what is here. See errors.h for how this
// directory reaches each package.
//
// What such an object owns, and how: fds.h.
//
// How one ends: one teardown design for both packages
// ---------------------------------------------------
// Three parties can end such an object: close() from JavaScript; the
// garbage collector (its finalizer) when nobody called close(); and the end
// of its environment while it is open (the process exiting, a worker thread
// returning, process.exit() in it, worker.terminate()). The third is the
// hard one, and it is solved once, here:
//
//  1. Its libuv handles live in memory of their own (a LoopHandles), never
//     in the object: libuv uses a handle until its close callback, a loop
//     turn after uv_close, which may be after the object was finalized. The
//     block frees itself after its last close callback.
//  2. One EnvResources per environment (the addon's instance data) knows
//     every open object of that environment (a LoopResource) and counts the
//     libuv handles not yet through their close callbacks. It registers one
//     async cleanup hook, at Init. When the environment ends, the hook runs
//     (no JavaScript runs from then on), calls each open object's
//     OnTeardown(), which closes its libuv handles and gives up what it
//     owns, and tells Node it is done only once the last close callback has
//     run. Node unloads the addon of a worker environment (dlclose) right
//     after its cleanup hooks, and a close callback still pending then would
//     jump into unmapped code; nor may a worker's loop close with our
//     handles on it.
//  3. What an object owns is given up in OnTeardown, not left to its
//     finalizer: the private duplicate, the public number (while it is the
//     same file) and its place in the list, all three held by an OwnedFd
//     that close(), the finalizer and OnTeardown each end with
//     (OwnedFd::Release); and whatever else it holds for JavaScript, which
//     no JavaScript will ever close now. The finalizers that may still run
//     find nothing left to do.
//  4. EnvResources lives until the environment is gone (its instance-data
//     finalizer) and no object or libuv handle refers to it, whichever comes
//     last: Node-API does not order an environment's finalizers.
//  5. Every call from a libuv callback into JavaScript goes through
//     CallFromLoop, which checks every status (see there).
//
// Where the two packages really differ, and why:
//  - A PidFd made with reap: true whose process still runs when its
//    environment ends is not simply closed: nothing else in the process
//    knows that child, and it would be a zombie from its exit until the
//    process ends. Its private duplicate goes to a small thread that sleeps
//    in waitid until then (reaper.cc, ReapLater). That thread runs the
//    addon's code after the environment that loaded it is gone, so pidfd,
//    and only pidfd, keeps itself loaded for the life of the process
//    (reaper.cc, StayLoaded). Nothing of scm-rights outlives its environment,
//    so it is unloaded with its last worker like any addon, and nothing here
//    is left allocated when that happens (the list of private duplicates
//    exists only while it has members).
//  - A Poller also holds fds for JavaScript (received and not yet handed
//    over, or kept for a queued send); OnTeardown closes those too. A PidFd
//    holds nothing but its pidfd.
#pragma once

#include "errors.h"
#include "fds.h"

#include <set>
#include <vector>

// In a named namespace at hidden visibility, for the reason fds.h gives.
#pragma GCC visibility push(hidden)

namespace folk {

class EnvResources;

// An object with fds and libuv handles on one environment's loop: it joins
// its EnvResources when it takes them and leaves once it has given them up.
class LoopResource {
 public:
  // The environment is ending and no JavaScript will run again: close every
  // libuv handle and give up everything owned, now, and leave.
  virtual void OnTeardown() = 0;

 protected:
  ~LoopResource() = default;
};

// libuv handles in memory of their own. Derive from it with the uv_*_t as
// members, Adopt() each after its uv_*_init succeeded, Close() each to end
// it; the block deletes itself after the last close callback. A block with
// nothing adopted yet is the creator's to delete.
class LoopHandles {
 public:
  explicit LoopHandles(EnvResources* env) : env_(env) {}
  virtual ~LoopHandles() = default;
  LoopHandles(const LoopHandles&) = delete;
  LoopHandles& operator=(const LoopHandles&) = delete;

  template <typename Handle>
  void Adopt(Handle* handle);

  template <typename Handle>
  void Close(Handle* handle) {
    uv_close(reinterpret_cast<uv_handle_t*>(handle), OnClosed);
  }

  // The block a handle was adopted into, from its libuv callback.
  template <typename Block, typename Handle>
  static Block* Of(Handle* handle) {
    return static_cast<Block*>(static_cast<LoopHandles*>(reinterpret_cast<uv_handle_t*>(handle)->data));
  }

 private:
  static void OnClosed(uv_handle_t* handle);

  EnvResources* env_;
  int open_ = 0;  // adopted handles not yet through their close callback
};

// One per environment: the addon's instance data. Install() at Init.
class EnvResources {
 public:
  static void Install(Napi::Env env) {
    EnvResources* self = new EnvResources();
    env.SetInstanceData<EnvResources, &EnvResources::OnEnvGone>(self);
    if (napi_add_async_cleanup_hook(env, OnTeardown, self, &self->hook_) != napi_ok) {
      throw Napi::Error::New(env, "napi_add_async_cleanup_hook failed");
    }
  }

  static EnvResources* Of(Napi::Env env) { return env.GetInstanceData<EnvResources>(); }

  // Nothing starts during teardown.
  bool tearing_down() const { return tearing_down_; }

  void Join(LoopResource* r) { members_.insert(r); }

  // Last thing a LoopResource does with it: it may be freed here.
  void Leave(LoopResource* r) {
    members_.erase(r);
    FreeIfUnused();
  }

 private:
  friend class LoopHandles;

  EnvResources() = default;

  static void OnTeardown(napi_async_cleanup_hook_handle, void* arg) {
    EnvResources* self = static_cast<EnvResources*>(arg);
    self->tearing_down_ = true;
    // Each leaves as it goes; a copy to walk.
    std::vector<LoopResource*> open(self->members_.begin(), self->members_.end());
    for (LoopResource* r : open) {
      if (self->members_.count(r) != 0) r->OnTeardown();
    }
    self->Settle();
  }

  static void OnEnvGone(Napi::Env, EnvResources* self) {
    self->env_gone_ = true;
    self->FreeIfUnused();
  }

  void HandleOpened() { open_handles_++; }

  void HandleClosed() {
    open_handles_--;
    Settle();
  }

  // Node's teardown goes on once the last close callback has run.
  void Settle() {
    if (tearing_down_ && open_handles_ == 0 && hook_ != nullptr) {
      napi_remove_async_cleanup_hook(hook_);
      hook_ = nullptr;
    }
    FreeIfUnused();
  }

  void FreeIfUnused() {
    if (env_gone_ && open_handles_ == 0 && members_.empty()) delete this;
  }

  std::set<LoopResource*> members_;
  size_t open_handles_ = 0;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  bool tearing_down_ = false;
  bool env_gone_ = false;
};

template <typename Handle>
void LoopHandles::Adopt(Handle* handle) {
  reinterpret_cast<uv_handle_t*>(handle)->data = this;
  open_++;
  env_->HandleOpened();
}

inline void LoopHandles::OnClosed(uv_handle_t* handle) {
  LoopHandles* self = static_cast<LoopHandles*>(handle->data);
  EnvResources* env = self->env_;
  if (--self->open_ == 0) delete self;
  env->HandleClosed();
}

// What such an object owns besides its libuv handles: the number it was
// handed, the private duplicate, and its place in its environment's list.
// Taken in two steps, so that a constructor with more to do in between
// (scm-rights' poll) leaves the number the caller's if it throws.
class OwnedFd {
 public:
  // The private duplicate of `fd` (DupPrivate: see there for what it
  // throws, and what `kind` and `expected` say), and `owner` joins its
  // environment's list. Throws with nothing taken.
  void Open(Napi::Env env, LoopResource* owner, int fd, const char* kind, const char* expected) {
    EnvResources* resources = EnvResources::Of(env);
    int io = DupPrivate(env, fd, kind, expected);
    try {
      resources->Join(owner);
    } catch (...) {
      ClosePrivate(io);
      throw;
    }
    resources_ = resources;
    owner_ = owner;
    io_ = io;
  }

  // The caller's number is the object's too from now on, closed by Release.
  void Own(int fd) { public_.Take(fd); }

  // Gives up the private duplicate, the caller's number (once Own()ed, and
  // while it is the same file) and the place in the list, once the object's
  // libuv handles are closed. Idempotent; safe from a finalizer. The
  // EnvResources may be freed here.
  void Release() {
    public_.Close(io_);  // first: the private duplicate tells whether it is still ours
    if (io_ >= 0) {
      ClosePrivate(io_);
      io_ = -1;
    }
    if (resources_ != nullptr) {
      resources_->Leave(owner_);
      resources_ = nullptr;
    }
  }

  // The private duplicate, no longer closed by Release: the caller's to
  // ClosePrivate (pidfd's ReapLater). The caller's number is closed now, as
  // Release would, while the duplicate can still tell whether it is ours.
  int HandOver() {
    public_.Close(io_);
    int io = io_;
    io_ = -1;
    return io;
  }

  int io() const { return io_; }  // -1 once released or handed over
  EnvResources* resources() const { return resources_; }  // null once released

 private:
  PublicFd public_;
  int io_ = -1;
  EnvResources* resources_ = nullptr;
  LoopResource* owner_ = nullptr;
};

// The exception pending in env, cleared; nullptr if none.
inline napi_value TakeException(napi_env env) {
  bool pending = false;
  napi_value err = nullptr;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &err);
  return err;
}

// Calls fn on recv from a libuv callback, in the object's async context:
// napi_make_callback, not napi_call_function, so microtasks and nextTicks
// (promises the callback settled) run right after, in the same turn. An
// exception the callback throws becomes an uncaught exception, as from a
// net.Socket listener. Through the C API with every status checked: while a
// worker is being torn down (process.exit() in a callback with more events
// due in the same loop turn, worker.terminate()) every call into JavaScript
// fails with no exception to show, and node-addon-api's throwing wrappers
// would turn that into a fatal error for the whole process. The caller opens
// the handle scope.
inline void CallFromLoop(napi_env env, napi_async_context context, napi_ref recv, napi_ref fn, size_t argc,
                         const napi_value* argv) {
  napi_value recv_value = nullptr;
  napi_value fn_value = nullptr;
  napi_value result;
  if (napi_get_reference_value(env, recv, &recv_value) != napi_ok || recv_value == nullptr ||
      napi_get_reference_value(env, fn, &fn_value) != napi_ok || fn_value == nullptr) {
    return;
  }
  if (napi_make_callback(env, context, recv_value, fn_value, argc, argv, &result) == napi_ok) return;
  napi_value err = TakeException(env);
  if (err != nullptr) napi_fatal_exception(env, err);
}

}  // namespace folk

#pragma GCC visibility pop
