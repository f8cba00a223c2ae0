#!/usr/bin/env python3
"""Write a synthetic depth data set (images + train/test text annotation files) in the layout and
with the joints of the dataset's description (default: globalvar.py's, K2HPD).

An output directory that already holds a data set is refused unless --force is given."""

import argparse
import os

import cv2

from deeppose import datasets
from deeppose.cli import command
from deeppose.dataset import read_annotations
from deeppose.draw import contact_sheet
from deeppose.options import image_size, positive_int
from deeppose.synth import existing_dataset, make_dataset


@command
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", help="data set directory (default: the description's root)")
    p.add_argument("--train", type=positive_int, required=True, help="number of training images")
    p.add_argument("--test", type=positive_int, required=True, help="number of test images")
    datasets.add_seed_argument(p)
    p.add_argument("--size", type=image_size, help="image size COLSxROWS (default: the description's size)")
    p.add_argument("--raw16", action="store_true", help="also write 16-bit millimetre depth PNGs")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count(), help="processes (default: all cores)")
    p.add_argument("--sheet", metavar="PNG", help="draw the first training images with their skeletons")
    p.add_argument("--sheet-count", type=positive_int, default=12, help="images on the sheet (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace the data set --out holds (its annotation files and the images of the same names)")
    datasets.add_argument(p)
    args = p.parse_args(argv)
    desc = datasets.selected(args.dataset)
    if desc.reader is not None:
        p.error(f"{desc.name} has annotation files of its own format; the generator writes text annotations")
    args.out = args.out or desc.root

    replaced = bool(existing_dataset(args.out, desc))
    paths = make_dataset(desc, args.out, args.train, args.test, datasets.selected_seed(args.seed), args.size or desc.size, args.raw16,
                         workers=args.workers, force=args.force)
    print(f"wrote {args.train + args.test} images and {paths['train']}, {paths['test']}")
    if replaced:
        print(f"replaced the data set in {args.out}: stage lists, databases and models made from the "
              "old one are stale (./deeppose_train.sh --from stage1 remakes them)")
    if args.sheet:
        items = read_annotations(paths["train"], desc)[:args.sheet_count]
        images = [cv2.imread(os.path.join(args.out, desc.image_dir, name), cv2.IMREAD_GRAYSCALE)
                  for name, _ in items]
        contact_sheet(images, [j for _, j in items], args.sheet, desc, cols=4)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
