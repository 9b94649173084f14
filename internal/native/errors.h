// Errors shaped like Node's own system errors, for every native package.
//
// internal/native/ holds the C++ that several packages compile into their own
// binary. Like internal/*.ts it is not a package: scripts/sync-internal.mjs
// copies each header a package's src/ includes as "internal/<name>.h" (and
// what that includes in turn) into its src/internal/, a gitignored copy made
// before node-gyp runs and before `pnpm pack`, so every tarball carries the
// sources it builds from and builds alone. Edit the files here, never the
// copies.
//
// Everything is inline in an unnamed namespace: each addon gets its own
// copy, with internal linkage. Nothing is exported from one .node for
// another to bind to (two of our addons in one process never share a
// function or a static), and an unused helper costs nothing.
#pragma once

#include <napi.h>
#include <uv.h>

#include <errno.h>

#include <string>

namespace folk {
namespace {

struct ErrnoText {
  std::string code;     // "ENOENT"
  std::string message;  // "no such file or directory"
};

// The name and message Node would give an errno. libuv names only the errnos
// it uses itself, and which those are depends on the Node version (Node 20's
// libuv has no ENOEXEC); the ones our syscalls can give beyond those are
// named here, the same on every version: waitid's ECHILD, execve's ENOEXEC
// and ELIBBAD. Anything else libuv does not know reads as libuv says it
// ("Unknown system error -N"), as it would from Node.
inline ErrnoText DescribeErrno(int err) {
  switch (err) {
    case ECHILD:
      return {"ECHILD", "no child processes"};
    case ENOEXEC:
      return {"ENOEXEC", "exec format error"};
    case ELIBBAD:
      return {"ELIBBAD", "accessing a corrupted shared library"};
    default:
      break;
  }
  // The _r forms: the others allocate (and never free) the text of an
  // errno libuv does not know.
  char code[64];
  char message[128];
  uv_err_name_r(-err, code, sizeof code);
  uv_strerror_r(-err, message, sizeof message);
  return {code, message};
}

// An Error shaped like Node's (fs, net): "ESRCH: no such process,
// pidfd_send_signal" with code, errno (negative, as libuv and Node report it)
// and syscall. Through the C API with every status checked, so that it is
// safe where nothing may throw (a libuv callback, while a worker is being
// torn down and every call into JavaScript fails): nullptr if it cannot be
// built. lib/index.ts adds what was being done.
inline napi_value ErrnoValue(napi_env env, int err, const char* syscall) {
  ErrnoText text = DescribeErrno(err);
  std::string message = text.code + ": " + text.message + ", " + syscall;
  napi_value msg, code, errno_value, syscall_value, error;
  if (napi_create_string_utf8(env, message.c_str(), message.size(), &msg) != napi_ok ||
      napi_create_string_utf8(env, text.code.c_str(), text.code.size(), &code) != napi_ok ||
      napi_create_int32(env, -err, &errno_value) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok ||
      napi_create_error(env, nullptr, msg, &error) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
      napi_set_named_property(env, error, "code", code) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall_value) != napi_ok) {
    return nullptr;
  }
  return error;
}

// The same Error to throw from a binding function.
inline Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  napi_value error = ErrnoValue(env, err, syscall);
  if (error == nullptr) throw Napi::Error::New(env);  // whatever stopped it, pending
  return Napi::Error(env, error);
}

// Argument i as an int32, or a TypeError saying `message`. The bindings'
// own argument errors: lib/ validates every public argument first, so these
// only catch a mistake in lib/ (and keep it from reaching a syscall).
inline int32_t Int32Arg(const Napi::CallbackInfo& info, size_t i, const char* message) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), message);
  return info[i].As<Napi::Number>().Int32Value();
}

}  // namespace
}  // namespace folk
