"""Advisory file locks that die with their holder: one writer per snapshot prefix or database.

`hold(path, what)` takes an exclusive `flock` on `<path>.lock` (created beside the resource) for the
life of the returned object, or raises `LockedError` naming the resource and the process that holds
it. Releasing the lock removes its file, so a run that ends leaves no `.lock` behind. The kernel
releases the lock itself when its process ends, however it ends (SIGKILL included), so a crashed
run never leaves a stale lock: only its harmless file, removed by the next holder's release.
`shared=True` takes a shared lock instead (the last sharer to release removes the file);
`check_free(path, what)` only checks that no one holds the lock (a reader refusing a resource
being written).

The file is removed only by a process holding its exclusive lock, after checking that the path
still names the file it locked; a process that locks a file and then finds it no longer at its path
(removed meanwhile) drops it and starts again. So two processes can never both hold the lock: one
on a removed file, the other on a new file at the path.
"""
import fcntl
import os


class LockedError(RuntimeError):
    """The resource is being written (or read, for a writer) by another process."""


class FileLock:
    """A held lock; `release()` (or leaving a `with` block) frees it and removes its file."""

    def __init__(self, fd, lock_path):
        self.fd, self.lock_path, self.pid = fd, lock_path, os.getpid()

    def release(self):
        if self.fd is not None:
            if os.getpid() == self.pid:
                _remove_and_close(self.fd, self.lock_path)
            else:  # a forked child's copy of the descriptor: the lock stays its parent's
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
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(fd, path, what, lock_path) from None
        if _at_path(fd, lock_path):
            break
        os.close(fd)  # its holder removed it between our open and flock: lock the new file
    if not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
    return FileLock(fd, lock_path)


def check_free(path, what):
    """Raise `LockedError` if another process holds the lock of `path` (e.g. is writing it).
    Creates nothing: without a lock file no one has ever locked the resource (a file left by a
    killed holder is removed)."""
    lock_path = lock_path_for(path)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked(fd, path, what, lock_path) from None
    _remove_and_close(fd, lock_path)


def _at_path(fd, lock_path):
    """Whether the file open as `fd` is still the one at `lock_path`."""
    try:
        st = os.stat(lock_path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _remove_and_close(fd, lock_path):
    """Release a lock held on `fd`: remove its file if no one else holds it (exclusive lock taken
    without waiting: a sharer still holding it keeps the file), then close (which unlocks)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # shared with another holder, who removes it on release
    else:
        if _at_path(fd, lock_path):
            try:
                os.unlink(lock_path)
            except PermissionError:
                pass  # a reader's check of a database in a folder it cannot write: the file stays
    os.close(fd)


def _locked(fd, path, what, lock_path):
    """The LockedError of a lock held elsewhere, naming its holder; closes `fd`."""
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
    os.close(fd)
    return LockedError(f"{what} {os.fspath(path)!r} is in use by {holder} (lock {lock_path}); "
                       "wait for it to finish or stop it")
