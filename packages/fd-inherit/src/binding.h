// The N-API functions binding.cc's Init exports that live in files of
// their own, by what they serve: fd_calls.cc (lib/stdio.ts, lib/cloexec.ts)
// and notify.cc (lib/notify.ts).
#pragma once

#include <napi.h>

namespace folk {
namespace binding {

// fd_calls.cc
Napi::Value Pipe(const Napi::CallbackInfo& info);
Napi::Value Close(const Napi::CallbackInfo& info);
Napi::Value GetCloexec(const Napi::CallbackInfo& info);
Napi::Value SetCloexec(const Napi::CallbackInfo& info);

// notify.cc
Napi::Value NotifySend(const Napi::CallbackInfo& info);

}  // namespace binding
}  // namespace folk
