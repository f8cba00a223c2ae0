"""Writing a NEW database whole (Caffe's db::NEW), built beside its path and renamed into place
when complete (caffe.formats.db)."""
import glob
import os
import shutil
import tempfile

import lmdb
import plyvel

from ... import filelock
from .backends import LEVELDB_OPTIONS, DBError, backend_name, library_message, log_opened

COMMIT_EVERY = 1000  # records per write transaction, as Caffe's tools commit


def new_db(path, backend, **options):
    """The writer of a NEW database at `path`, of kind `backend` (see `backend_name`)."""
    return {"LMDB": LMDBWriter, "LEVELDB": LevelDBWriter}[backend_name(backend)](path, **options)


class _Writer:
    """A NEW database (an error if the path exists, as Caffe's db::NEW) written in transactions of
    `commit_every` records. It is built in a temporary directory beside the path while the path's
    lock is held, and appears at the path when closed without an error (`close()` or the end of a
    `with` block); `abort()` (or an error in the `with` block) removes it. Errors name the
    database. Subclasses give KIND, ERRORS, DIR_MODE (the directory's permissions),
    `_create(directory)` (the open store) and `_write(records)` (one transaction)."""

    KIND, ERRORS, DIR_MODE = None, (), None

    def __init__(self, path, commit_every=COMMIT_EVERY):
        self.name = os.fspath(path)
        self.commit_every = commit_every
        self._pending = []
        self.store = self._tmp = None
        try:
            self._lock = filelock.hold(self.name, "database")
        except filelock.LockedError as e:
            raise DBError(str(e)) from None
        try:
            if os.path.lexists(self.name):
                raise DBError(f"{self.name}: already exists; the tool writes a NEW database "
                              "(remove it first)")
            folder, base = os.path.split(os.path.abspath(self.name))
            for orphan in glob.glob(os.path.join(glob.escape(folder), f".tmp-{glob.escape(base)}-*")):
                shutil.rmtree(orphan, ignore_errors=True)  # left by a killed writer of this path
            try:
                self._tmp = tempfile.mkdtemp(prefix=f".tmp-{base}-", dir=folder)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, self.DIR_MODE & ~umask)
                self.store = self._create(self._tmp)
            except (OSError, *self.ERRORS) as e:
                raise DBError(f"{self.name}: cannot create the database: {library_message(e)}") from None
        except BaseException:
            self.abort()
            raise
        log_opened(self.KIND, self.name)

    def put(self, key, value):
        """Queue one record (committed with the next full transaction)."""
        self._pending.append((key.encode() if isinstance(key, str) else key, value))
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self):
        try:
            if self._pending:
                self._write(self._pending)
                self._pending = []
        except (OSError, *self.ERRORS) as e:
            raise DBError(f"{self.name}: writing the database failed ({library_message(e)}); nothing was written "
                          "at that path") from None

    def close(self):
        """Commit what is queued and put the complete database at its path (once)."""
        if self._tmp is None:
            return
        try:
            self.commit()
            self._close_store()
            os.rename(self._tmp, self.name)
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        self._lock.release()

    def _close_store(self):
        if self.store is not None:
            self.store.close()
            self.store = None

    def abort(self):
        """Drop the database being written: nothing appears at the path."""
        self._close_store()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._lock is not None:
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        if kind is None:
            self.close()
        else:
            self.abort()


class LMDBWriter(_Writer):
    """A NEW LMDB; the map grows by doubling when full, like Caffe's."""

    KIND, ERRORS, DIR_MODE = "LMDB", (lmdb.Error,), 0o744  # Caffe's mkdir(path, 0744)

    def __init__(self, path, commit_every=COMMIT_EVERY, map_size=1 << 26):
        self.map_size = map_size
        super().__init__(path, commit_every)

    def _create(self, directory):
        return lmdb.open(directory, map_size=self.map_size, subdir=True)

    def _write(self, records):
        while True:
            try:
                with self.store.begin(write=True) as txn:
                    for key, value in records:
                        txn.put(key, value)
                return
            except lmdb.MapFullError:
                self.store.set_mapsize(self.store.info()["map_size"] * 2)


class LevelDBWriter(_Writer):
    """A NEW LevelDB with Caffe's options; each transaction is one WriteBatch (written through to
    the disk, as an LMDB transaction is)."""

    KIND, ERRORS, DIR_MODE = "LEVELDB", (plyvel.Error,), 0o755  # LevelDB's mkdir(path, 0755)

    def _create(self, directory):
        return plyvel.DB(directory, create_if_missing=True, error_if_exists=True, **LEVELDB_OPTIONS)

    def _write(self, records):
        with self.store.write_batch(sync=True) as batch:
            for key, value in records:
                batch.put(key, value)
