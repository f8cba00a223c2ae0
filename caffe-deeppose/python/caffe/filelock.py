"""Advisory file locks that die with their holder: one writer per snapshot prefix or database.

`hold(path, what)` takes an exclusive `flock` on `<path>.lock` (created beside the resource) for the
life of the returned object, or raises `LockedError` naming the resource and the process that holds
it. The kernel releases the lock when its process ends, however it ends (SIGKILL included), so a
crashed run never leaves a stale lock behind; the `.lock` file itself stays and is harmless.
`shared=True` takes a shared lock instead; `check_free(path, what)` only checks that no one
holds the lock (a reader refusing a resource being written, leaving no lock file behind).
"""
import fcntl
import os


class LockedError(RuntimeError):
    """The resource is being written (or read, for a writer) by another process."""


class FileLock:
    """A held lock; `release()` (or leaving a `with` block) frees it."""

    def __init__(self, fd, lock_path):
        self.fd, self.lock_path = fd, lock_path

    def release(self):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def lock_path_for(path):
    """The lock file of a resource: `<path>.lock` beside it (a directory's lock sits next to it)."""
    return os.path.abspath(os.fspath(path)).rstrip(os.sep) + ".lock"


def hold(path, what, shared=False):
    """Take the lock of `path` without waiting; `what` names the resource in the error."""
    lock_path = lock_path_for(path)
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked(fd, path, what, lock_path) from None
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
    return FileLock(fd, lock_path)


def check_free(path, what):
    """Raise `LockedError` if another process holds the lock of `path` (e.g. is writing it).
    Creates nothing: without a lock file no one has ever locked the resource."""
    lock_path = lock_path_for(path)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked(fd, path, what, lock_path) from None
    os.close(fd)  # closing the only descriptor releases the shared lock


def _locked(fd, path, what, lock_path):
    """The LockedError of a lock held elsewhere, naming its holder; closes `fd`."""
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
    os.close(fd)
    return LockedError(f"{what} {os.fspath(path)!r} is in use by {holder} (lock {lock_path}); "
                       "wait for it to finish or stop it")
