"""Caffe's databases of Datum records, LMDB and LevelDB: readers with a cycling cursor, and
writers, like caffe::db.

Both keep the records in bytewise key order (LMDB's default comparator and LevelDB's, as Caffe
uses them), so the same records read back in the same order from either. `backend_name` reads a
DataParameter's `backend` (LEVELDB unless set, as in Caffe's schema) or a tool's `-backend` flag;
`open_db(path, backend)` and `new_db(path, backend)` give the reader or writer of that kind. A
reader pointed at the other kind of database says which it is.

A database appears whole or not at all: the writer builds it in a temporary directory beside its
path, under the path's lock (`caffe.filelock`), and renames it into place when it is complete; a
failed or interrupted write leaves nothing at the path. Readers refuse a database whose lock is
held (being written) and report a damaged one naming it.

Opening a LevelDB writes to it (LevelDB's own lock file and log, as in Caffe), so reading one needs
write access to its directory, and only one process can have it open at a time.
"""
import collections
import glob
import os
import shutil
import tempfile

import lmdb
import plyvel
from google.protobuf.message import DecodeError

from . import filelock, glog
from .proto import caffe_pb2

COMMIT_EVERY = 1000  # records per write transaction, as Caffe's tools commit
Kind = collections.namedtuple("Kind", "marker label a opened")  # a directory holding `marker` is one
KINDS = {"LMDB": Kind("data.mdb", "LMDB", "an LMDB", "db_lmdb.cpp:35"),
         "LEVELDB": Kind("CURRENT", "LevelDB", "a LevelDB", "db_leveldb.cpp:18")}
# Caffe's LevelDB::Open options (the rest are LevelDB's defaults: snappy, the bytewise comparator)
LEVELDB_OPTIONS = dict(block_size=65536, write_buffer_size=268435456, max_open_files=100)


class DBError(ValueError):
    """A database that cannot be opened, written or read; the message names the path (and key)."""


class WrongBackend(DBError):
    """The path holds a database of the other kind (`found`: "LMDB" or "LEVELDB")."""

    def __init__(self, message, found):
        super().__init__(message)
        self.found = found


def backend_name(backend, where=""):
    """"LMDB" or "LEVELDB": a DataParameter's `backend` (an enum value) or a tool's -backend
    string (lmdb or leveldb, any case); anything else is an error naming `where`."""
    if isinstance(backend, int):
        return caffe_pb2.DataParameter.DB.Name(backend)
    name = str(backend).upper()
    if name not in KINDS:
        place = f"{where}: " if where else ""
        raise DBError(f"{place}unknown database backend {backend!r} (lmdb or leveldb)")
    return name


def kind_of(path):
    """"LMDB", "LEVELDB" or None: the kind of database the directory at `path` holds."""
    return next((name for name, kind in KINDS.items() if os.path.isfile(os.path.join(path, kind.marker))), None)


def open_db(path, backend):
    """The reader of the database at `path`, of kind `backend` (see `backend_name`)."""
    return {"LMDB": LMDB, "LEVELDB": LevelDB}[backend_name(backend)](path)


def new_db(path, backend, **options):
    """The writer of a NEW database at `path`, of kind `backend` (see `backend_name`)."""
    return {"LMDB": LMDBWriter, "LEVELDB": LevelDBWriter}[backend_name(backend)](path, **options)


def _opened(kind, name):
    glog.info(KINDS[kind].opened, f"Opened {kind.lower()} {name}")


def record_error(path, key, message):
    """A DBError about the record `key` of the database at `path`."""
    shown = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
    return DBError(f"{path}: record {shown!r}: {message}")


def parse_datum(value, path, key):
    """The Datum stored under `key`; a clear error naming the database and key if it is not one."""
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as e:
        raise record_error(path, key, f"not a Datum ({len(value)} bytes): {e}") from None
    return datum


def _message(error):
    """The text of a library error (plyvel's carry LevelDB's status as bytes)."""
    text = error.args[0] if error.args else str(error)
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


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
                       f"({_message(error)}); recreate it")

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
        _opened(self.KIND, self.name)
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
            text = _message(e)
            held = " (LevelDB lets one process open a database at a time: another has it open)" \
                if "lock" in text.lower() else ""
            raise DBError(f"{self.name}: failed to open leveldb: {text}{held}") from None
        _opened(self.KIND, self.name)
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
                raise DBError(f"{self.name}: cannot create the database: {_message(e)}") from None
        except BaseException:
            self.abort()
            raise
        _opened(self.KIND, self.name)

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
            raise DBError(f"{self.name}: writing the database failed ({_message(e)}); nothing was written "
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
