"""draw_net: draw the graph of a net prototxt into an image file (pycaffe's python/draw_net.py).

    draw_net [--rankdir LR] [--phase TRAIN|TEST|ALL] [--display_lrm] NET.prototxt OUT.png

The output format is the file's extension (png, svg, pdf, ...); rendering needs Graphviz's `dot`.
"""
import sys
from argparse import ArgumentDefaultsHelpFormatter, ArgumentParser

from ..proto import caffe_pb2
from ..formats.protoio import ProtoFileError, read_prototxt

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST, "ALL": None}


def parse_args(argv):
    parser = ArgumentParser(description="Draw a graph of the net architecture.",
                            formatter_class=ArgumentDefaultsHelpFormatter)
    parser.add_argument("input_net_proto_file", help="Input network prototxt file")
    parser.add_argument("output_image_file", help="Output image file")
    parser.add_argument("--rankdir", default="LR",
                        help="One of TB (top-bottom, i.e., vertical), RL (right-left, i.e., horizontal), "
                             "or another valid dot option; see http://www.graphviz.org/doc/info/attrs.html#k:rankdir")
    parser.add_argument("--phase", default="ALL", choices=sorted(PHASES),
                        help="Which network phase to draw: can be TRAIN, TEST, or ALL. If ALL, then all "
                             "layers are drawn regardless of phase.")
    parser.add_argument("--display_lrm", action="store_true",
                        help="Use this flag to visualize the learning rate multiplier, when non-zero, for "
                             "the learning layers (Convolution, Deconvolution, InnerProduct).")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .. import draw
    try:
        net = read_prototxt(args.input_net_proto_file, caffe_pb2.NetParameter)
        print(f"Drawing net to {args.output_image_file}")
        draw.draw_net_to_file(net, args.output_image_file, args.rankdir, PHASES[args.phase],
                              args.display_lrm)
    except (ProtoFileError, ValueError, RuntimeError) as e:
        print(f"draw_net: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"draw_net: cannot write {args.output_image_file}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
