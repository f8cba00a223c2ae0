"""Caffe's image list files (`path label` lines) and image reading (io.cpp's ReadImageToCVMat),
shared by the ImageData layer and the convert_imageset tools."""
import math

from ..lazy_modules import cv2


class ListFileError(ValueError):
    """A list file that cannot be read or parsed; the message names the file and line."""


class ListEntry:
    """One line of a list file: its 1-based line number, the image path and its label(s)."""

    __slots__ = ("line", "path", "label")

    def __init__(self, line, path, label):
        self.line, self.path, self.label = line, path, label

    def __repr__(self):
        return f"ListEntry({self.line}, {self.path!r}, {self.label!r})"


def read_list(source, multilabel=False):
    """The entries of list file `source`, one per line.

    Stock lines are `path label` split at the last space (the path may hold spaces), the label an
    integer; `multilabel` lines are `path l1 l2 ...` with finite float labels, as many on every
    line as on the first. A blank line is kept as an entry with path "" (Caffe keeps it too: it
    cannot be read and is skipped, using up its index). Errors name the file and line.
    """
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ListFileError(f"{source}: cannot read the list file: {e.strerror}") from None
    entries, first = [], None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip():
            entries.append(ListEntry(number, "", None))
            continue
        try:
            if multilabel:
                path, *labels = line.split()
                if not labels:
                    raise ValueError("no labels")
                label = [float(v) for v in labels]
            else:
                path, _, label = line.rpartition(" ")
                if not path:
                    raise ValueError("no label")
                label = int(label)
        except ValueError as e:
            form = "path label1 label2 ... (float labels)" if multilabel else "path label (an integer)"
            raise ListFileError(f"{source}:{number}: expected `{form}`, got {line!r} ({e})") from None
        if multilabel:
            bad = [v for v, x in zip(labels, label) if not math.isfinite(x)]
            if bad:
                raise ListFileError(f"{source}:{number}: label {bad[0]!r} is not a finite number")
            if first is None:
                first = (number, len(label))
            elif len(label) != first[1]:
                raise ListFileError(f"{source}:{number}: {len(label)} labels, but line {first[0]} has "
                                    f"{first[1]}: every line needs the same number")
        entries.append(ListEntry(number, path, label))
    return entries


def read_image(filename, height=0, width=0, is_color=True):
    """An image as an H x W x C uint8 BGR array (H x W for grey), resized bilinearly to
    (height, width) when both are positive; None if it cannot be read (as Caffe's)."""
    img = cv2.imread(filename, cv2.IMREAD_COLOR if is_color else cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    if height > 0 and width > 0:
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    return img


def to_chw(img):
    """An OpenCV image (H x W [x C]) as a (C, H, W) array."""
    return img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
