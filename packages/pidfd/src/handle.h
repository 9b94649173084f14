// The Handle class of handle.cc, as the module's Init sees it.
#pragma once

#include <napi.h>

namespace pidfd {

// Defines the Handle class, and sets up the environment's teardown registry
// (internal/handles.h) that every Handle joins.
Napi::Function DefineHandle(Napi::Env env);

}  // namespace pidfd
