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
//
// Its methods are in three files: poller.cc the poll, from the constructor
// to Shutdown(); receive.cc the receive path (a Batch per wakeup, handed to
// onRead); held_fds.cc the fds held for JavaScript (dup, release, drop).
#pragma once

#include <napi.h>
#include <uv.h>

#include <memory>

#include "held_fds.h"
#include "internal/handles.h"
#include "receive.h"

namespace scm {

class Poller : public Napi::ObjectWrap<Poller>, public folk::LoopResource {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Poller(const Napi::CallbackInfo& info);
  ~Poller() override { Shutdown(); }
  void OnTeardown() override { Shutdown(); }

 private:
  struct PollBlock;

  // poller.cc: the poll's life, and how a Poller ends.
  PollBlock* OpenPoll(Napi::Env env, int fd);
  Napi::Value SetEvents(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value Io(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Shutdown();
  static void OnPoll(uv_poll_t* poll, int status, int events);
  void Call(Napi::FunctionReference& fn, size_t argc, const napi_value* argv);

  // receive.cc: what one readable wakeup reads, to onRead.
  void ReadBatch();
  void Deliver(size_t chunks, size_t used, int status);

  // held_fds.cc: dup(), release(), drop().
  Napi::Value Dup(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Drop(const Napi::CallbackInfo& info);

  folk::OwnedFd fd_;  // the caller's number, and our private duplicate
  Batch batch_;
  HeldFds held_;
  int events_ = 0;
  PollBlock* handle_ = nullptr;
  Napi::FunctionReference onRead_;
  Napi::FunctionReference onWrite_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

// Defines the Poller class, and sets up the environment's teardown registry
// (internal/handles.h) that every Poller joins.
Napi::Function DefinePoller(Napi::Env env);

}  // namespace scm
