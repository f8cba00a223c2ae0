"""upgrade_net_proto_text, upgrade_net_proto_binary, upgrade_solver_proto_text: legacy Caffe
files rewritten in the current format, as Caffe's tools of the same names do.

    upgrade_net_proto_text V0_NET_PROTO_FILE_IN NET_PROTO_FILE_OUT
    upgrade_net_proto_binary V0_NET_PROTO_FILE_IN NET_PROTO_FILE_OUT
    upgrade_solver_proto_text OLD_SOLVER_PROTO_FILE_IN SOLVER_PROTO_FILE_OUT

Exit status: 0 upgraded (or already current, which is logged as an error as Caffe does),
1 wrong usage or a problem while upgrading, 2 an input that does not parse. The output is
written atomically.
"""
import sys

from .. import glog
from ..formats.protoio import ProtoFileError, read_binary_proto, read_prototxt, write_binary_proto, write_prototxt
from ..formats.upgrade import UpgradeError, net_needs_upgrade, upgrade_net, upgrade_solver
from ..proto import caffe_pb2
from .flags import parse_or_exit


def _run(argv, program, usage_args, read, message_cls, what, needs_upgrade, upgrade, write, written):
    cpp = f"{program}.cpp"
    _, args = parse_or_exit(sys.argv[1:] if argv is None else argv, {}, program,
                            f"Usage: {program} {usage_args}")
    if len(args) != 2:
        glog.error(cpp + ":22", f"Usage: {program} {usage_args}")
        return 1
    source, target = args
    try:
        param = read(source, message_cls)
    except ProtoFileError as e:
        glog.error(cpp + ":30", f"Failed to parse input {what} file as {message_cls.DESCRIPTOR.name}: {e}")
        return 2
    success = True
    if needs_upgrade(param):
        try:
            success = upgrade(param, source)
        except UpgradeError as e:
            glog.error(cpp + ":39", f"{source}: {e}")
            return 1
        if not success:
            glog.error(cpp + ":39", "Encountered error(s) while upgrading prototxt; see details above.")
    else:
        glog.error(cpp + ":43", f"File already in latest proto format: {source}")
    write(target, param)
    glog.info(cpp + written, f"Wrote upgraded {message_cls.DESCRIPTOR.name} {what} proto to {target}")
    return 0 if success else 1


def main_net_text(argv=None):
    return _run(argv, "upgrade_net_proto_text", "v0_net_proto_file_in net_proto_file_out", read_prototxt,
                caffe_pb2.NetParameter, "text", net_needs_upgrade, upgrade_net, write_prototxt, ":49")


def main_net_binary(argv=None):
    return _run(argv, "upgrade_net_proto_binary", "v0_net_proto_file_in net_proto_file_out", read_binary_proto,
                caffe_pb2.NetParameter, "binary", net_needs_upgrade, upgrade_net, write_binary_proto, ":48")


def main_solver_text(argv=None):
    return _run(argv, "upgrade_solver_proto_text", "old_solver_proto_file_in solver_proto_file_out", read_prototxt,
                caffe_pb2.SolverParameter, "text", lambda p: p.HasField("solver_type"), upgrade_solver,
                write_prototxt, ":49")
