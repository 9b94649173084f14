// The fds a Poller holds for JavaScript (see poller.h): those received and
// not yet handed to a consumer, and the dups a queued send keeps, with
// JavaScript's dup(), release() and drop() over them.
#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "held_fds.h"
#include "internal/errors.h"
#include "poller.h"

namespace scm {

void HeldFds::Hold(int fd) {
  if (fd < 0) return;
  size_t i = static_cast<size_t>(fd);
  if (i >= held_.size()) held_.resize(std::max(i + 1, held_.size() * 2));
  if (!held_[i]) count_++;
  held_[i] = true;
}

bool HeldFds::Unhold(int fd) {
  size_t i = static_cast<size_t>(fd);
  if (fd < 0 || i >= held_.size() || !held_[i]) return false;
  held_[i] = false;
  count_--;
  return true;
}

void HeldFds::Drop(int fd) {
  if (Unhold(fd)) close(fd);
}

void HeldFds::CloseAll() {
  if (count_ > 0) {
    for (size_t fd = 0; fd < held_.size(); fd++) {
      if (held_[fd]) close(static_cast<int>(fd));
    }
    count_ = 0;
  }
  held_.clear();
}

namespace {

// Calls fn with fds, one number or an array of them. One number is the
// common case (a message with one fd), handed over per message, so it
// costs a single Node-API call.
template <typename Fn>
void EachFd(const Napi::CallbackInfo& info, Fn fn) {
  int32_t one;
  if (info.Length() >= 1 && napi_get_value_int32(info.Env(), info[0], &one) == napi_ok) {
    fn(one);
    return;
  }
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "fds must be a number or an array");
  Napi::Array arr = info[0].As<Napi::Array>();
  for (uint32_t i = 0, n = arr.Length(); i < n; i++) {
    Napi::Value v = arr.Get(i);
    if (v.IsNumber()) fn(v.As<Napi::Number>().Int32Value());
  }
}

}  // namespace

// dup(fd): an F_DUPFD_CLOEXEC copy, held: a queued send's own fds, so the
// caller may close theirs as soon as send() returns.
Napi::Value Poller::Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = folk::Int32Arg(info, 0, "fd must be a number");
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup == -1) throw folk::ErrnoError(env, errno, "fcntl");
  if (fd_.io() < 0) {
    close(dup);  // closed: nothing would ever send or drop it
    throw folk::ErrnoError(env, EBADF, "fcntl");
  }
  held_.Hold(dup);
  return Napi::Number::New(env, dup);
}

// release(fds): (a number or an array) no longer held; they are a consumer's now.
Napi::Value Poller::Release(const Napi::CallbackInfo& info) {
  EachFd(info, [this](int fd) { held_.Unhold(fd); });
  return info.Env().Undefined();
}

// drop(fds): close(2) each fd that is still held. Not fs.closeSync: in a
// worker thread Node warns about every fd fs did not open itself.
Napi::Value Poller::Drop(const Napi::CallbackInfo& info) {
  EachFd(info, [this](int fd) { held_.Drop(fd); });
  return info.Env().Undefined();
}

}  // namespace scm
