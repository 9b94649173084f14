// N-API face of @folk/fd-inherit. Thin on purpose: lib/index.ts decides
// defaults, resolves stdio, searches PATH and builds the environment; this
// file exports the binding (Init) and runs a spawn: spawn_request.cc turns
// the finished plan into C data, spawn.cc carries it out, and errno is
// reported the way Node's own system errors look. The other calls are in
// fd_calls.cc and notify.cc (binding.h).
#include <napi.h>

#include <stdint.h>
#include <stdlib.h>
#include <string>
#include <sys/resource.h>

#include "binding.h"
#include "internal/errors.h"
#include "spawn.h"
#include "spawn_request.h"

namespace {

using folk::ErrnoError;
using folk::Int32Arg;

// spawn(plan): [pid, pidfd]. The plan's shape is NativeSpawnPlan in
// lib/native.ts. Throws an errno Error whose syscall names the step that
// failed (execve, chdir, dup2, clone, ...); lib/index.ts turns it into the
// public 'spawn' error.
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "spawn(plan: object)");
  Napi::Object plan = info[0].As<Napi::Object>();
  folk::SpawnRequest request;
  folk::ReadSpawnRequest(plan, &request);

  folk::SpawnOutcome out;
  if (folk::SpawnChild(&request.plan, &out) == -1) throw ErrnoError(env, out.err, folk::StepName(out.step));
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t(0), Napi::Number::New(env, out.pid));
  result.Set(uint32_t(1), Napi::Number::New(env, out.pidfd));
  return result;
}

// selfPidfdInodeId(): the inode id of this process's pidfd as a decimal
// string (it may not fit a double), or null when the kernel cannot tell.
Napi::Value SelfPidfdInodeIdValue(const Napi::CallbackInfo& info) {
  uint64_t id;
  if (!folk::SelfPidfdInodeId(&id)) return info.Env().Null();
  return Napi::String::New(info.Env(), std::to_string(id));
}

// getenv(name): the variable's value in the C environment (environ), or
// null. lib/env.ts asks once, at load, whether a variable set through
// process.env arrives there: only then may a spawn leave the child's
// environment to the copy of environ in spawn_request.cc.
Napi::Value Getenv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "getenv(name: string)");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const char* value = getenv(name.c_str());
  if (value == nullptr) return env.Null();
  return Napi::String::New(env, value);
}

// killAndReap(pid, pidfd): for a child spawn() cannot hand out after all.
Napi::Value KillAndReap(const Napi::CallbackInfo& info) {
  const char* usage = "killAndReap(pid: number, pidfd: number)";
  int pid = Int32Arg(info, 0, usage);
  int pidfd = Int32Arg(info, 1, usage);
  if (pid <= 0 || pidfd < 0) throw Napi::RangeError::New(info.Env(), "killAndReap(pid, pidfd)");
  folk::KillAndReap(pid, pidfd);
  return info.Env().Undefined();
}

// Hooks for this package's own tests, exported as `testing` (lib/native.ts
// declares it @internal): they force each fallback the spawn core chooses
// between, and the pdeathsig race, so that every path runs on a kernel that
// would never take it. Process-wide, like the choices they force.
Napi::Value GetCloneMode(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), folk::GetCloneMode());
}

Napi::Value SetCloneMode(const Napi::CallbackInfo& info) {
  int mode = Int32Arg(info, 0, "setCloneMode(mode: number)");
  if (mode < folk::kModeClone3ClearSighand || mode > folk::kModeClonePidfdOpen) {
    throw Napi::RangeError::New(info.Env(), "unknown clone mode");
  }
  folk::SetCloneMode(mode);
  return info.Env().Undefined();
}

Napi::Value GetCloseMethod(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), folk::GetCloseMethod());
}

Napi::Value SetCloseMethod(const Napi::CallbackInfo& info) {
  int method = Int32Arg(info, 0, "setCloseMethod(method: number)");
  if (method < folk::kCloseRangeCloexec || method > folk::kCloseLoop) {
    throw Napi::RangeError::New(info.Env(), "unknown close method");
  }
  folk::SetCloseMethod(method);
  return info.Env().Undefined();
}

Napi::Value GetReportMode(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), folk::GetReportMode());
}

Napi::Value SetReportMode(const Napi::CallbackInfo& info) {
  int mode = Int32Arg(info, 0, "setReportMode(mode: number)");
  if (mode < folk::kReportUnknown || mode > folk::kReportPipe) throw Napi::RangeError::New(info.Env(), "unknown report mode");
  folk::SetReportMode(mode);
  return info.Env().Undefined();
}

Napi::Value SetAssumedParentPid(const Napi::CallbackInfo& info) {
  folk::SetAssumedParentPid(Int32Arg(info, 0, "setAssumedParentPid(pid: number)"));
  return info.Env().Undefined();
}

Napi::Object TestingHooks(Napi::Env env) {
  Napi::Object testing = Napi::Object::New(env);
  testing.Set("getCloneMode", Napi::Function::New(env, GetCloneMode, "getCloneMode"));
  testing.Set("setCloneMode", Napi::Function::New(env, SetCloneMode, "setCloneMode"));
  testing.Set("getCloseMethod", Napi::Function::New(env, GetCloseMethod, "getCloseMethod"));
  testing.Set("setCloseMethod", Napi::Function::New(env, SetCloseMethod, "setCloseMethod"));
  testing.Set("getReportMode", Napi::Function::New(env, GetReportMode, "getReportMode"));
  testing.Set("setReportMode", Napi::Function::New(env, SetReportMode, "setReportMode"));
  testing.Set("setAssumedParentPid", Napi::Function::New(env, SetAssumedParentPid, "setAssumedParentPid"));
  return testing;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("pipe", Napi::Function::New(env, folk::binding::Pipe, "pipe"));
  exports.Set("close", Napi::Function::New(env, folk::binding::Close, "close"));
  exports.Set("getCloexec", Napi::Function::New(env, folk::binding::GetCloexec, "getCloexec"));
  exports.Set("setCloexec", Napi::Function::New(env, folk::binding::SetCloexec, "setCloexec"));
  exports.Set("killAndReap", Napi::Function::New(env, KillAndReap, "killAndReap"));
  exports.Set("selfPidfdInodeId", Napi::Function::New(env, SelfPidfdInodeIdValue, "selfPidfdInodeId"));
  exports.Set("getenv", Napi::Function::New(env, Getenv, "getenv"));
  exports.Set("testing", TestingHooks(env));
  exports.Set("notifySend", Napi::Function::New(env, folk::binding::NotifySend, "notifySend"));

  Napi::Object rlimits = Napi::Object::New(env);
  rlimits.Set("as", Napi::Number::New(env, RLIMIT_AS));
  rlimits.Set("core", Napi::Number::New(env, RLIMIT_CORE));
  rlimits.Set("cpu", Napi::Number::New(env, RLIMIT_CPU));
  rlimits.Set("data", Napi::Number::New(env, RLIMIT_DATA));
  rlimits.Set("fsize", Napi::Number::New(env, RLIMIT_FSIZE));
  rlimits.Set("locks", Napi::Number::New(env, RLIMIT_LOCKS));
  rlimits.Set("memlock", Napi::Number::New(env, RLIMIT_MEMLOCK));
  rlimits.Set("msgqueue", Napi::Number::New(env, RLIMIT_MSGQUEUE));
  rlimits.Set("nice", Napi::Number::New(env, RLIMIT_NICE));
  rlimits.Set("nofile", Napi::Number::New(env, RLIMIT_NOFILE));
  rlimits.Set("nproc", Napi::Number::New(env, RLIMIT_NPROC));
  rlimits.Set("rss", Napi::Number::New(env, RLIMIT_RSS));
  rlimits.Set("rtprio", Napi::Number::New(env, RLIMIT_RTPRIO));
  rlimits.Set("rttime", Napi::Number::New(env, RLIMIT_RTTIME));
  rlimits.Set("sigpending", Napi::Number::New(env, RLIMIT_SIGPENDING));
  rlimits.Set("stack", Napi::Number::New(env, RLIMIT_STACK));
  exports.Set("RLIMITS", rlimits);

  Napi::Object namespaces = Napi::Object::New(env);
  for (const auto& ns : folk::kNamespaces) namespaces.Set(ns.name, Napi::Number::New(env, ns.flag));
  exports.Set("NAMESPACES", namespaces);
  return exports;
}

}  // namespace

NODE_API_MODULE(fd_inherit, Init)
