// What becomes of a reap: true PidFd's process when its environment ends
// while it runs (reaper.cc), as handle.cc and the module's Init see it.
#pragma once

namespace pidfd {

// Whether this library stays loaded for the life of the process (see
// StayLoaded in reaper.cc); the first call decides, once. Init calls it
// before any teardown can hand a pidfd to ReapLater.
bool KeptLoaded();

// Collects the exit of the process of `fd`, a private duplicate
// (internal/handles.h) now the caller's alone, now or from a thread once
// it has one; the fd is closed either way.
void ReapLater(int fd);

}  // namespace pidfd
