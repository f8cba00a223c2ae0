"""convert_imageset and convert_imageset_multilabel: a list of images into an LMDB (default) or a
LevelDB (-backend leveldb) of Datums.

    convert_imageset [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME
    convert_imageset_multilabel [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME

Lines are `path label` (an integer, stored in `label`) or, for the multilabel tool,
`path l1 l2 ...` (floats, stored as float32 in `float_data`). Record keys are `%08d_<path>`, the
number counting list lines. Images are read by OpenCV as BGR (grey with -gray), resized
bilinearly when both -resize_height and -resize_width are given, and stored as raw uint8 CHW
bytes, or with -encoded as the file's own bytes (re-encoded as -encode_type when resized, turned
grey or of another type), as Caffe's ReadImageToDatum does. An image that cannot be read is
reported (naming its line) and skipped. -shuffle uses a fixed seed, so runs are reproducible.

The list file is checked whole before anything is written (a malformed line, a line with another
number of labels than the first, a non-finite label, or no listed image that exists is an error
naming the file and line), and the database appears only when complete: a conversion that fails
(-check_size, a full disk, no image readable, Ctrl-C) leaves nothing at DB_NAME.
"""
import os
import random
import sys

from tqdm import tqdm

from .. import glog
from ..formats.db.backends import DBError, backend_name
from ..formats.db.writers import COMMIT_EVERY, new_db
from ..formats.image_list import ListFileError, read_image, read_list, to_chw
from ..lazy_modules import cv2
from ..proto import caffe_pb2
from .flags import Flag, parse_or_exit

FLAGS = {
    "gray": Flag(False, "When this option is on, treat images as grayscale ones"),
    "shuffle": Flag(False, "Randomly shuffle the order of images and their labels"),
    "backend": Flag("lmdb", "The backend {lmdb, leveldb} for storing the result"),
    "resize_width": Flag(0, "Width images are resized to"),
    "resize_height": Flag(0, "Height images are resized to"),
    "check_size": Flag(False, "When this option is on, check that all the datum have the same size"),
    "encoded": Flag(False, "When this option is on, the encoded image will be save in datum"),
    "encode_type": Flag("", "Optional: What type should we encode the image as ('png','jpg',...)."),
}
SHUFFLE_SEED = 0
PROGRESS_FROM = 1000  # lines: shorter runs get no progress bar


def _same_type(filename, encoding):
    """Does the file's extension name the encoding (jpeg counts as jpg)? (io.cpp's matchExt)"""
    dot = filename.rfind(".")
    ext = (filename[dot + 1:] if dot >= 0 else filename).lower()
    encoding = encoding.lower()
    return ext == encoding or (encoding == "jpg" and ext == "jpeg")


def _encoding(path, flags):
    if flags["encode_type"] or not flags["encoded"]:
        return flags["encode_type"]
    dot = path.rfind(".")
    if dot < 0:
        glog.warning("convert_imageset.cpp:117", f"Failed to guess the encoding of '{path}'")
    return path[dot + 1:].lower()  # no dot: the whole name, as Caffe takes it


def image_datum(filename, flags, encoding):
    """The Datum of one image without its label (ReadImageToDatum), or None if it cannot be read."""
    height, width = max(0, flags["resize_height"]), max(0, flags["resize_width"])
    is_color = not flags["gray"]
    img = read_image(filename, height, width, is_color)
    if img is None:
        return None
    if not encoding:
        chw = to_chw(img)
        return caffe_pb2.Datum(channels=chw.shape[0], height=chw.shape[1], width=chw.shape[2],
                               data=chw.tobytes(), encoded=False)
    if (img.ndim == 3 and img.shape[2] == 3) == is_color and not height and not width \
            and _same_type(filename, encoding):
        with open(filename, "rb") as f:  # the file's own bytes
            return caffe_pb2.Datum(data=f.read(), encoded=True)
    try:
        ok, buf = cv2.imencode("." + encoding, img)
    except cv2.error:  # no encoder for that extension
        ok = False
    if not ok:
        raise ValueError(f"cannot encode {filename} as .{encoding}")
    return caffe_pb2.Datum(data=buf.tobytes(), encoded=True)


def convert(root, list_file, db_name, flags, multilabel=False):
    """Write the images of `list_file` (paths relative to `root`) into the new database `db_name`
    (of -backend's kind); returns the number of records written."""
    backend = backend_name(flags["backend"], "-backend")
    if flags["encode_type"] and not cv2.haveImageWriter("image." + flags["encode_type"]):
        raise ValueError(f"-encode_type={flags['encode_type']}: OpenCV has no encoder for that type "
                         "(give an image file extension: png, jpg, ...)")
    entries = read_list(list_file, multilabel)
    if not any(e.path and os.path.isfile(root + e.path) for e in entries):
        first = next((e for e in entries if e.path), None)
        if first is None:
            raise ListFileError(f"{list_file}: lists no image; no database written")
        raise ListFileError(f"{list_file}:{first.line}: {root + first.path!r} and every other listed image "
                            f"are missing; no database written (is ROOTFOLDER {root!r} right?)")
    if flags["shuffle"]:
        glog.info("convert_imageset.cpp:86", "Shuffling data")
        random.Random(SHUFFLE_SEED).shuffle(entries)
    glog.info("convert_imageset.cpp:89", f"A total of {len(entries)} images.")
    if flags["encode_type"] and not flags["encoded"]:
        glog.info("convert_imageset.cpp:92", "encode_type specified, assuming encoded=true.")
    count, data_size = 0, None
    progress = tqdm(entries, disable=None if len(entries) >= PROGRESS_FROM else True, unit="img",
                    file=sys.stderr, desc=os.path.basename(db_name))
    with new_db(db_name, backend) as db:
        for line_id, entry in enumerate(progress):
            filename = root + entry.path
            datum = image_datum(filename, flags, _encoding(entry.path, flags)) if entry.path else None
            if datum is None:
                with tqdm.external_write_mode(file=sys.stderr):
                    glog.error("io.cpp:80", f"Could not open or find file {filename} "
                                            f"(line {entry.line} of {list_file}); skipped")
                continue
            if flags["check_size"] and not datum.encoded:
                if data_size is None:
                    data_size = len(datum.data)
                elif len(datum.data) != data_size:
                    raise ValueError(f"{list_file}:{entry.line}: {entry.path}: incorrect data field size "
                                     f"{len(datum.data)} (the first image has {data_size}; -check_size)")
            if multilabel:
                datum.float_data.extend(entry.label)
            else:
                datum.label = entry.label
            db.put(f"{line_id:08d}_{entry.path}", datum.SerializeToString())
            count += 1
            if count % COMMIT_EVERY == 0:
                db.commit()
                with tqdm.external_write_mode(file=sys.stderr):
                    glog.info("convert_imageset.cpp:147", f"Processed {count} files.")
        if not count:
            raise DBError(f"{db_name}: none of the {len(entries)} images of {list_file} could be read; "
                          "no database written")
        if count % COMMIT_EVERY:
            db.commit()
            glog.info("convert_imageset.cpp:153", f"Processed {count} files.")
    progress.close()
    return count


def _main(argv, multilabel):
    program = "convert_imageset_multilabel" if multilabel else "convert_imageset"
    message = (f"Convert a set of images to the leveldb/lmdb\nformat used as input for Caffe.\nUsage:\n"
               f"    {program} [FLAGS] ROOTFOLDER/ LISTFILE DB_NAME\n")
    flags, args = parse_or_exit(sys.argv[1:] if argv is None else argv, FLAGS, program, message)
    if len(args) < 3:
        print(message, file=sys.stderr)
        return 1
    try:
        convert(args[0], args[1], args[2], flags, multilabel)
    except (DBError, ListFileError, ValueError, OSError) as e:
        glog.log("F", "convert_imageset.cpp:98", str(e))
        return 1
    return 0


def main(argv=None):
    """The convert_imageset tool (integer labels)."""
    return _main(argv, multilabel=False)


def main_multilabel(argv=None):
    """The DeepPose convert_imageset_multilabel tool (float labels into float_data)."""
    return _main(argv, multilabel=True)


if __name__ == "__main__":
    sys.exit(main())
