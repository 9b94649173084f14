// The receive path's buffers and its read loop (receive.cc), for the Poller
// (poller.h).
#pragma once

#include <napi.h>

#include <stddef.h>
#include <stdint.h>

#include <memory>

#include "held_fds.h"

namespace scm {

// The batch buffers: the scratch the bytes are read into, and the two
// Int32Arrays JavaScript reads the chunks' meta and fds from.
class Batch {
 public:
  // From new Poller(fd, chunkBytes, scratchBytes, meta, fds, ...): checks
  // and takes arguments 1 to 4, holding the two arrays until Unpin().
  void Take(const Napi::CallbackInfo& info);
  void Unpin();

  // One wakeup's reading of `io`: recvmsg until EAGAIN, the batch is full,
  // or it brought in the fd budget. Each fd that arrives is held in `held`.
  // Returns 0 when more may come, 1 at end of file, -errno on an error; what
  // was read is in *chunks chunks, *used bytes.
  int Read(int io, HeldFds* held, size_t* chunks, size_t* used);

  // How many fds a Read may bring in before it stops (it stops after the
  // message that reaches it, so by at most one message's fds over). Set by
  // JavaScript from what its consumer has not taken yet: fds read ahead sit
  // in this process's fd table, so a fast sender must meet a full socket
  // buffer instead. At least 1.
  void SetFdBudget(size_t fds) { fdBudget_ = fds < 1 ? 1 : fds; }

  const char* bytes() const { return scratch_.get(); }

  // Drops (HeldFds::Drop) the fds of the first `chunks` chunks read.
  void DropFds(size_t chunks, HeldFds* held) const;

 private:
  static bool AtEof(int io);

  // recvmsg said ECONNRESET, and reading went on for what was queued behind it.
  bool reset_ = false;
  size_t chunk_ = 0;
  size_t fdBudget_ = SIZE_MAX;
  std::unique_ptr<char[]> scratch_;
  size_t scratchSize_ = 0;
  int32_t* meta_ = nullptr;
  size_t metaCap_ = 0;
  int32_t* fds_ = nullptr;
  size_t fdsCap_ = 0;
  Napi::ObjectReference metaRef_;
  Napi::ObjectReference fdsRef_;
};

}  // namespace scm
