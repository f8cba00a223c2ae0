"""Reading a database (Caffe's db::READ): every record in key order, or a cursor that cycles
(caffe.formats.db)."""
import os

import lmdb
import plyvel

from ... import filelock, glog
from .backends import KINDS, LEVELDB_OPTIONS, DBError, WrongBackend, backend_name, kind_of, library_message, \
    log_opened


def open_db(path, backend):
    """The reader of the database at `path`, of kind `backend` (see `backend_name`)."""
    return {"LMDB": LMDB, "LEVELDB": LevelDB}[backend_name(backend)](path)


_OPEN = {}  # (kind, real path) -> [handle, users]: a database is opened once per process


class _Reader:
    """A database opened for reading (Caffe's db::READ), shared by its readers in this process (a
    train and a test net): py-lmdb opens an environment once per process, and LevelDB locks its
    database to one opener. Subclasses give KIND, ERRORS (the library's exceptions), `_open()`,
    `_close(handle)`, `_items()` (every record in key order) and `_raw_cursor()`."""

    KIND, ERRORS = None, ()

    def __init__(self, path):
        self.name = os.fspath(path)
        self.path = os.path.realpath(self.name)
        try:
            filelock.check_free(self.name, "database")
        except filelock.LockedError as e:
            raise DBError(f"{e} (it is being written)") from None
        found, kind = kind_of(self.path), KINDS[self.KIND]
        if found is None:
            raise DBError(f"{self.name}: not {kind.a} (no {kind.marker} in that directory)")
        if found != self.KIND:
            raise WrongBackend(f"{self.name}: not {kind.a}: it holds {KINDS[found].a} ({KINDS[found].marker})",
                               found)
        self._key = (self.KIND, self.path)
        if self._key not in _OPEN:
            _OPEN[self._key] = [self._open(), 0]
        _OPEN[self._key][1] += 1
        self.handle = _OPEN[self._key][0]

    def damaged(self, error):
        """The DBError of a database whose pages cannot be read."""
        return DBError(f"{self.name}: the {KINDS[self.KIND].label} is damaged or unreadable "
                       f"({library_message(error)}); recreate it")

    def __len__(self):
        return sum(1 for _ in self.records())

    def records(self):
        """Every (key, value) in key order, once."""
        try:
            yield from self._items()
        except self.ERRORS as e:
            raise self.damaged(e) from None

    def first(self):
        """The first (key, value); a clear error if the database is empty."""
        for record in self.records():
            return record
        raise DBError(f"{self.name}: the database is empty")

    def cursor(self):
        return CyclingCursor(self)

    def close(self):
        """Release the database (closed with its last reader)."""
        if self.handle is None:
            return
        entry = _OPEN[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _OPEN[self._key]
            self._close(self.handle)
        self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LMDB(_Reader):
    """An LMDB opened read-only. Without a lock file (a copied or read-only database) it is opened
    with lock=False, so the directory stays as it is."""

    KIND, ERRORS = "LMDB", (lmdb.Error,)

    def _open(self):
        lock = os.path.exists(os.path.join(self.path, "lock.mdb"))
        for attempt in ((True, False) if lock else (False,)):
            try:
                env = lmdb.open(self.path, readonly=True, lock=attempt, max_readers=512, max_spare_txns=4)
                break
            except lmdb.Error as e:  # a lock file we may not write: read without locking
                error = e
        else:
            raise DBError(f"{self.name}: cannot open LMDB: {error}")
        log_opened(self.KIND, self.name)
        return env

    def _close(self, env):
        env.close()

    def __len__(self):
        return self.handle.stat()["entries"]

    def _items(self):
        with self.handle.begin(buffers=False) as txn:
            yield from txn.cursor()

    def _raw_cursor(self):
        return _LMDBCursor(self.handle)


class LevelDB(_Reader):
    """A LevelDB opened as Caffe's db_leveldb.cpp opens it (never created by a reader)."""

    KIND, ERRORS = "LEVELDB", (plyvel.Error,)

    def _open(self):
        try:
            db = plyvel.DB(self.path, create_if_missing=False, **LEVELDB_OPTIONS)
        except plyvel.Error as e:
            text = library_message(e)
            held = " (LevelDB lets one process open a database at a time: another has it open)" \
                if "lock" in text.lower() else ""
            raise DBError(f"{self.name}: failed to open leveldb: {text}{held}") from None
        log_opened(self.KIND, self.name)
        return db

    def _close(self, db):
        db.close()

    def _items(self):
        yield from self.handle.iterator()  # over a snapshot: what was there when it began

    def _raw_cursor(self):
        return _LevelDBCursor(self.handle)


class _LMDBCursor:
    """An LMDB cursor in its own read transaction (a snapshot), with the moves CyclingCursor uses."""

    def __init__(self, env):
        self._txn = env.begin(buffers=False)
        cursor = self._txn.cursor()
        self.first, self.next, self.item, self.key, self.set_key = (
            cursor.first, cursor.next, cursor.item, cursor.key, cursor.set_key)

    def close(self):
        self._txn.abort()


class _LevelDBCursor:
    """A LevelDB iterator (over a snapshot) with the moves of an LMDB cursor: first() and next()
    say whether they reached a record, set_key(key) whether that exact key exists."""

    def __init__(self, db):
        self._it = db.raw_iterator()
        self.item, self.key, self.close = self._it.item, self._it.key, self._it.close

    def first(self):
        self._it.seek_to_first()
        return self._it.valid()

    def next(self):
        self._it.next()
        return self._it.valid()

    def set_key(self, key):
        self._it.seek(key)
        return self._it.valid() and self._it.key() == key


class CyclingCursor:
    """Caffe's data cursor: `next()` gives the records in key order and wraps to the first one
    after the last ("Restarting data prefetching from start.")."""

    def __init__(self, db):
        self.db = db
        self._cursor = db._raw_cursor()
        try:
            found = self._cursor.first()
        except db.ERRORS as e:
            raise db.damaged(e) from None
        if not found:
            raise DBError(f"{db.name}: the database is empty")

    def next(self):
        """The current (key, value); the cursor then moves on (wrapping)."""
        try:
            record = self._cursor.item()
            if not self._cursor.next():
                glog.info("data_layer.cpp:86", "Restarting data prefetching from start.")
                self._cursor.first()
        except self.db.ERRORS as e:
            raise self.db.damaged(e) from None
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
        self._cursor.close()
