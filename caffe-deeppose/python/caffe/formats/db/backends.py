"""The two database backends, LMDB and LevelDB: their names, how to tell them apart on disk,
their errors, and a record as a Datum (caffe.formats.db)."""
import collections
import os

from google.protobuf.message import DecodeError

from ... import glog
from ...proto import caffe_pb2

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


def log_opened(kind, name):
    """Caffe's log line of a database opened."""
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


def library_message(error):
    """The text of a library error (plyvel's carry LevelDB's status as bytes)."""
    text = error.args[0] if error.args else str(error)
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
