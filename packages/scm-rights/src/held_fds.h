// The fds a Poller holds for JavaScript (poller.h), as a set.
#pragma once

#include <stddef.h>

#include <vector>

namespace scm {

// A bitmap over fd numbers: fds are small integers, and holding, releasing
// and dropping are then O(1) whatever the order.
class HeldFds {
 public:
  void Hold(int fd);
  // False when fd is not held (released, dropped, or closed with the socket).
  bool Unhold(int fd);
  // Closes fd only while it is held, so a second drop, or one after close(),
  // cannot close a number the process has since given to another file.
  void Drop(int fd);
  // Closes every fd still held.
  void CloseAll();

 private:
  std::vector<bool> held_;
  size_t count_ = 0;
};

}  // namespace scm
