"""Caffe's databases of Datum records, LMDB and LevelDB, like caffe::db: the backends and their
errors (`backends`), readers with a cycling cursor (`readers`), writers (`writers`).

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
