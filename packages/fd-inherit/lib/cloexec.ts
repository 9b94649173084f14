// FD_CLOEXEC: reading and setting it for callers, and the open-fd test
// spawn() makes with it.
import { invalidArgType, validateFd } from './internal/args.js';
import { explainFcntl } from './errors.js';
import { native } from './native.js';

/**
 * Whether `fd` survives execve (FD_CLOEXEC is clear). Every fd Node and the
 * folk packages create is close-on-exec, so this is normally `false`
 * except for 0-2 and fds inherited from a parent.
 *
 * @throws EBADF when `fd` is not open.
 */
export function isInheritable(fd: number): boolean {
  validateFd(fd, 'fd');
  try {
    return !native.getCloexec(fd);
  } catch (err) {
    throw explainFcntl(err, fd);
  }
}

/**
 * Set or clear FD_CLOEXEC on `fd`. Only needed for children started some
 * other way (child_process, exec): `spawn` here places fds without touching
 * the parent's flags.
 *
 * @throws EBADF when `fd` is not open.
 */
export function setInheritable(fd: number, inheritable: boolean): void {
  validateFd(fd, 'fd');
  if (typeof inheritable !== 'boolean') throw invalidArgType('inheritable', 'of type boolean', inheritable);
  try {
    native.setCloexec(fd, !inheritable);
  } catch (err) {
    throw explainFcntl(err, fd);
  }
}

/** Whether `fd` is open here. */
export function isOpen(fd: number): boolean {
  try {
    native.getCloexec(fd);
    return true;
  } catch {
    return false; // F_GETFD fails only with EBADF
  }
}
