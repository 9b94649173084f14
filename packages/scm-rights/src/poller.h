// The Poller class of poller.cc, as the module's Init sees it.
#pragma once

#include <napi.h>

namespace scm {

// Defines the Poller class, and sets up the environment's teardown registry
// (internal/handles.h) that every Poller joins.
Napi::Function DefinePoller(Napi::Env env);

}  // namespace scm
