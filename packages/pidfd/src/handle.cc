// Handle: owns one pidfd (the public number it was given and a private
// duplicate, see internal/handles.h) and, once someone waits, a Watch: a
// uv_poll_t on the private duplicate and, only if a tracer holds an exit, a
// uv_signal_t for SIGCHLD. How a Handle ends, by close(), by the garbage
// collector or with its environment, is internal/handles.h's teardown
// design; what only a Handle does then (reap: true) is in reaper.cc.
//
// Why SIGCHLD: a pidfd turns readable when its process exits, and stays
// readable. When a tracer (strace -f, gdb) holds the exit, waitid has
// nothing for us yet, and polling the pidfd again would wake the loop on
// every turn until the tracer lets go. Then the kernel signals the parent
// with SIGCHLD, so lib/index.ts watches for that instead and asks again.
// libuv lets any number of watchers share one signal, its own child_process
// watcher included.
#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <signal.h>

#include <memory>

#include "handle.h"
#include "internal/errors.h"
#include "internal/handles.h"
#include "reaper.h"

namespace {

using folk::ErrnoError;
using folk::Int32Arg;

class Handle;

struct Watch : folk::LoopHandles {
  using LoopHandles::LoopHandles;
  uv_poll_t poll;
  uv_signal_t chld;
  bool chld_inited = false;
  Handle* owner = nullptr;  // null once the Handle let go of it
};

void CloseWatch(Watch* w) {
  w->owner = nullptr;
  // uv_close stops the watchers synchronously, so the fd may be closed right
  // after; only the memory has to wait for the callbacks.
  w->Close(&w->poll);
  if (w->chld_inited) w->Close(&w->chld);
}

class Handle : public Napi::ObjectWrap<Handle>, public folk::LoopResource {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Handle(const Napi::CallbackInfo& info);
  ~Handle() override { Release(); }
  void OnTeardown() override;

 private:
  // JavaScript's methods.
  Napi::Value WatchPidfd(const Napi::CallbackInfo& info);
  Napi::Value WatchSigchld(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value SetRef(const Napi::CallbackInfo& info);
  Napi::Value SetUnref(const Napi::CallbackInfo& info);
  Napi::Value PrivateFd(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  bool Arm(const Napi::CallbackInfo& info, const char* usage, const char* syscall);
  void ForEachHandle(void (*fn)(uv_handle_t*));
  void Deactivate();
  void CloseWatchIfAny();
  void Release();

  // From the loop.
  static void OnReady(uv_poll_t* h, int status, int events);
  static void OnSignal(uv_signal_t* h, int signum);
  void Fire(int status);

  folk::OwnedFd fd_;  // the number the Handle was given, and its private duplicate
  bool reap_ = false;
  bool ref_ = true;
  bool active_ = false;
  Watch* watch_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> async_;
};

Napi::Function Handle::Define(Napi::Env env) {
  return DefineClass(env, "Handle",
                     {
                         InstanceMethod<&Handle::WatchPidfd>("watchPidfd"),
                         InstanceMethod<&Handle::WatchSigchld>("watchSigchld"),
                         InstanceMethod<&Handle::Stop>("stop"),
                         InstanceMethod<&Handle::SetRef>("ref"),
                         InstanceMethod<&Handle::SetUnref>("unref"),
                         InstanceMethod<&Handle::Close>("close"),
                         InstanceMethod<&Handle::PrivateFd>("privateFd"),
                     });
}

// new Handle(fd: number, reap: boolean): takes ownership of fd, after
// making the private duplicate (EMFILE, EBADF: it throws and fd stays the
// caller's). Never another Handle's private duplicate (see DupPrivate).
Handle::Handle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Handle>(info) {
  Napi::Env env = info.Env();
  const char* usage = "new Handle(fd: number, reap: boolean)";
  int fd = Int32Arg(info, 0, usage);
  if (fd < 0) throw Napi::RangeError::New(env, "new Handle(fd: number, reap: boolean): fd must be >= 0");
  if (info.Length() < 2 || !info[1].IsBoolean()) throw Napi::TypeError::New(env, usage);
  reap_ = info[1].As<Napi::Boolean>().Value();
  fd_.Open(env, this, fd, "PidFd", "a pidfd");
  fd_.Own(fd);
}

// The environment is ending (see internal/handles.h). A reap: true
// process that still runs could never be reaped by anything there again
// (nothing else in the process knows it) and would be a zombie from its
// exit until the process ends, so its private duplicate goes to
// ReapLater, once the watch no longer polls it.
void Handle::OnTeardown() {
  callback_.Reset();
  if (reap_ && fd_.io() >= 0) {
    CloseWatchIfAny();
    pidfd::ReapLater(fd_.HandOver());
  }
  Release();
}

// watchPidfd(onReady: (err: Error | null) => void): watch the pidfd for
// POLLIN (and no longer for SIGCHLD). While watching, the JS object and
// callback are held strongly, like any active Node handle; stop() and
// close() let them go.
Napi::Value Handle::WatchPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Arm(info, "watchPidfd(onReady: function)", "uv_poll_start")) return env.Undefined();
  if (watch_->chld_inited) uv_signal_stop(&watch_->chld);
  int rc = uv_poll_start(&watch_->poll, UV_READABLE, OnReady);
  if (rc != 0) throw ErrnoError(env, -rc, "uv_poll_start");
  return env.Undefined();
}

// watchSigchld(onReady): watch for SIGCHLD instead of the pidfd, which
// stays readable while a tracer holds the exit; onReady(null) on each
// SIGCHLD.
Napi::Value Handle::WatchSigchld(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!Arm(info, "watchSigchld(onReady: function)", "uv_signal_start")) return env.Undefined();
  if (!watch_->chld_inited) {
    int rc = uv_signal_init(watch_->poll.loop, &watch_->chld);
    if (rc != 0) throw ErrnoError(env, -rc, "uv_signal_init");
    watch_->Adopt(&watch_->chld);
    watch_->chld_inited = true;
    if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&watch_->chld));
  }
  uv_poll_stop(&watch_->poll);
  int rc = uv_signal_start(&watch_->chld, OnSignal, SIGCHLD);
  if (rc != 0) throw ErrnoError(env, -rc, "uv_signal_start");
  return env.Undefined();
}

// What both watches share: check, make the Watch on first use, take the
// callback, hold the object. false during teardown (nothing starts then).
bool Handle::Arm(const Napi::CallbackInfo& info, const char* usage, const char* syscall) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, usage);
  if (fd_.io() < 0) throw ErrnoError(env, EBADF, syscall);
  if (fd_.resources()->tearing_down()) return false;
  if (!watch_) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no libuv loop");
    Watch* w = new Watch(fd_.resources());
    int rc = uv_poll_init(loop, &w->poll, fd_.io());
    if (rc != 0) {
      delete w;
      throw ErrnoError(env, -rc, "uv_poll_init");
    }
    w->Adopt(&w->poll);
    w->owner = this;
    watch_ = w;
    if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
  }
  callback_ = Napi::Persistent(info[0].As<Napi::Function>());
  if (!active_) {
    active_ = true;
    Ref();
  }
  if (!async_) async_ = std::make_unique<Napi::AsyncContext>(env, "PIDFDWAIT");
  return true;
}

Napi::Value Handle::Stop(const Napi::CallbackInfo& info) {
  Deactivate();
  return info.Env().Undefined();
}

Napi::Value Handle::SetRef(const Napi::CallbackInfo& info) {
  ref_ = true;
  ForEachHandle(uv_ref);
  return info.Env().Undefined();
}

Napi::Value Handle::SetUnref(const Napi::CallbackInfo& info) {
  ref_ = false;
  ForEachHandle(uv_unref);
  return info.Env().Undefined();
}

void Handle::ForEachHandle(void (*fn)(uv_handle_t*)) {
  if (!watch_) return;
  fn(reinterpret_cast<uv_handle_t*>(&watch_->poll));
  if (watch_->chld_inited) fn(reinterpret_cast<uv_handle_t*>(&watch_->chld));
}

// privateFd(): the private duplicate every syscall goes through; -1 once closed.
Napi::Value Handle::PrivateFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_.io()); }

Napi::Value Handle::Close(const Napi::CallbackInfo& info) {
  Deactivate();
  Release();
  return info.Env().Undefined();
}

void Handle::Deactivate() {
  if (watch_) {
    uv_poll_stop(&watch_->poll);
    if (watch_->chld_inited) uv_signal_stop(&watch_->chld);
  }
  callback_.Reset();
  if (active_) {
    active_ = false;
    Unref();
  }
}

void Handle::CloseWatchIfAny() {
  if (watch_) {
    CloseWatch(watch_);
    watch_ = nullptr;
  }
}

// Gives up everything: the watch, then what fd_ holds (the private fd, the
// public fd while it is still the same file, the place in the
// environment's list). Idempotent; safe from the finalizer.
void Handle::Release() {
  CloseWatchIfAny();
  fd_.Release();
}

void Handle::OnReady(uv_poll_t* h, int status, int /*events*/) {
  Watch* w = folk::LoopHandles::Of<Watch>(h);
  if (w->owner) w->owner->Fire(status);
}

void Handle::OnSignal(uv_signal_t* h, int /*signum*/) {
  Watch* w = folk::LoopHandles::Of<Watch>(h);
  if (w->owner) w->owner->Fire(0);
}

void Handle::Fire(int status) {
  if (callback_.IsEmpty()) return;
  napi_env env = Env();
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value arg = nullptr;
  if (status < 0) {
    arg = folk::ErrnoValue(env, -status, "uv_poll");
  } else {
    napi_get_null(env, &arg);
  }
  if (arg != nullptr) {
    napi_ref self = static_cast<const Napi::Reference<Napi::Object>&>(*this);
    folk::CallFromLoop(env, *async_, self, callback_, 1, &arg);
  }
  napi_close_handle_scope(env, scope);
}

}  // namespace

Napi::Function pidfd::DefineHandle(Napi::Env env) {
  folk::EnvResources::Install(env);
  return Handle::Define(env);
}
