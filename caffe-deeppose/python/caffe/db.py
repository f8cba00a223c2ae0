"""Caffe's databases of Datum records (LMDB): a cycling reader and a writer, like caffe::db.

A database appears whole or not at all: the writer builds it in a temporary directory beside its
path, under the path's lock (`caffe.filelock`), and renames it into place when it is complete; a
failed or interrupted write leaves nothing at the path. Readers refuse a database whose lock is
held (being written) and report a damaged one naming it.
"""
import glob
import os
import shutil
import tempfile

import lmdb
from google.protobuf.message import DecodeError

from . import filelock, glog
from .proto import caffe_pb2

COMMIT_EVERY = 1000  # records per write transaction, as Caffe's tools commit


class DBError(ValueError):
    """A database that cannot be opened, written or read; the message names the path (and key)."""


def check_backend(backend, where=""):
    """Accept LMDB (a DataParameter enum value or a tool's string); LEVELDB is a clear error."""
    name = caffe_pb2.DataParameter.DB.Name(backend) if isinstance(backend, int) else str(backend).upper()
    if name != "LMDB":
        place = f"{where}: " if where else ""
        raise DBError(f"{place}backend {name} is not supported: only LMDB is (convert_imageset writes "
                      "LMDB by default)")


def record_error(path, key, message):
    """A DBError about the record `key` of the database at `path`."""
    shown = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return DBError(f"{path}: record {shown!r}: {message}")


def damaged(path, error):
    """The DBError of an LMDB whose pages cannot be read (lmdb.CorruptedError and the like)."""
    return DBError(f"{path}: the LMDB is damaged or unreadable ({error}); recreate it")


def parse_datum(value, path, key):
    """The Datum stored under `key`; a clear error naming the database and key if it is not one."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as e:
        raise record_error(path, key, f"not a Datum ({len(value)} bytes): {e}") from None
    return datum


_OPEN = {}  # real path -> [environment, users]: py-lmdb opens an environment once per process


class LMDB:
    """An LMDB opened read-only (Caffe's db::READ). Without a lock file (a copied or read-only
    database) it is opened with lock=False, so the directory stays as it is. Readers of the same
    database (a train and a test net) share one environment."""

    def __init__(self, path):
        self.name = os.fspath(path)
        self.path = os.path.realpath(self.name)
        try:
            filelock.check_free(self.name, "database")
        except filelock.LockedError as e:
            raise DBError(f"{e} (it is being written)") from None
        if not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise DBError(f"{self.name}: not an LMDB (no data.mdb in that directory)")
        if self.path not in _OPEN:
            _OPEN[self.path] = [self._open(), 0]
        _OPEN[self.path][1] += 1
        self.env = _OPEN[self.path][0]
        glog.info("db_lmdb.cpp:35", f"Opened lmdb {self.name}")

    def _open(self):
        lock = os.path.exists(os.path.join(self.path, "lock.mdb"))
        for attempt in ((True, False) if lock else (False,)):
            try:
                return lmdb.open(self.path, readonly=True, lock=attempt, max_readers=512, max_spare_txns=4)
            except lmdb.Error as e:  # a lock file we may not write: read without locking
                error = e
        raise DBError(f"{self.name}: cannot open LMDB: {error}")

    def __len__(self):
        return self.env.stat()["entries"]

    def records(self):
        """Every (key, value) in key order, once."""
        try:
            with self.env.begin(buffers=False) as txn:
                yield from txn.cursor()
        except lmdb.Error as e:
            raise damaged(self.name, e) from None

    def first(self):
        """The first (key, value); a clear error if the database is empty."""
        for record in self.records():
            return record
        raise DBError(f"{self.name}: the database is empty")

    def cursor(self):
        return CyclingCursor(self)

    def close(self):
        """Release the environment (closed with its last reader)."""
        if self.env is None:
            return
        entry = _OPEN[self.path]
        entry[1] -= 1
        if entry[1] == 0:
            del _OPEN[self.path]
            self.env.close()
        self.env = None


class CyclingCursor:
    """Caffe's data cursor: `next()` gives the records in key order and wraps to the first one
    after the last ("Restarting data prefetching from start.")."""

    def __init__(self, db):
        self.db = db
        self._txn = db.env.begin(buffers=False)
        self._cursor = self._txn.cursor()
        try:
            found = self._cursor.first()
        except lmdb.Error as e:
            raise damaged(db.name, e) from None
        if not found:
            raise DBError(f"{db.name}: the database is empty")

    def next(self):
        """The current (key, value); the cursor then moves on (wrapping)."""
        try:
            record = self._cursor.item()
            if not self._cursor.next():
                glog.info("data_layer.cpp:86", "Restarting data prefetching from start.")
                self._cursor.first()
        except lmdb.Error as e:
            raise damaged(self.db.name, e) from None
        return record

    def skip(self, n):
        for _ in range(n):
            self.next()

    def key(self):
        """The key of the record `next()` gives next (the read position)."""
        return self._cursor.key()

    def seek(self, key):
        """Make the record of `key` the next one; False (position unchanged) if there is none."""
        here = self._cursor.key()
        if self._cursor.set_key(key):
            return True
        self._cursor.set_key(here)
        return False

    def close(self):
        self._txn.abort()


class LMDBWriter:
    """A NEW LMDB (an error if the path exists, as Caffe's db::NEW) written in transactions of
    `commit_every` records; the map grows by doubling when full, like Caffe's. It is built in a
    temporary directory beside the path while the path's lock is held, and appears at the path
    when closed without an error (`close()` or the end of a `with` block); `abort()` (or an error
    in the `with` block) removes it. Errors name the database."""

    def __init__(self, path, commit_every=COMMIT_EVERY, map_size=1 << 26):
        self.name = os.fspath(path)
        self.commit_every = commit_every
        self._pending = []
        self.env = self._tmp = None
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
                os.chmod(self._tmp, 0o744 & ~umask)  # Caffe's mkdir(path, 0744)
                self.env = lmdb.open(self._tmp, map_size=map_size, subdir=True)
            except (OSError, lmdb.Error) as e:
                raise DBError(f"{self.name}: cannot create the database: {e}") from None
        except BaseException:
            self.abort()
            raise
        glog.info("db_lmdb.cpp:35", f"Opened lmdb {self.name}")

    def put(self, key, value):
        """Queue one record (committed with the next full transaction)."""
        self._pending.append((key.encode() if isinstance(key, str) else key, value))
        if len(self._pending) >= self.commit_every:
            self.commit()

    def commit(self):
        try:
            while self._pending:
                try:
                    with self.env.begin(write=True) as txn:
                        for key, value in self._pending:
                            txn.put(key, value)
                    self._pending = []
                except lmdb.MapFullError:
                    self.env.set_mapsize(self.env.info()["map_size"] * 2)
        except (OSError, lmdb.Error) as e:
            raise DBError(f"{self.name}: writing the database failed ({e}); nothing was written "
                          "at that path") from None

    def close(self):
        """Commit what is queued and put the complete database at its path (once)."""
        if self._tmp is None:
            return
        try:
            self.commit()
            self.env.close()
            self.env = None
            os.rename(self._tmp, self.name)
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        self._lock.release()

    def abort(self):
        """Drop the database being written: nothing appears at the path."""
        if self.env is not None:
            self.env.close()
            self.env = None
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
