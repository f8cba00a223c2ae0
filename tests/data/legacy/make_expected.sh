#!/bin/sh
# Regenerate the *.upgraded.* files of this folder with the real (seed) Caffe's tools:
#   . /opt/seed-caffe/env.sh && sh make_expected.sh
set -e
cd "$(dirname "$0")"
"${SEED_PY:-/opt/seed-caffe/venv/bin/python}" -c '
from caffe.proto import caffe_pb2
from google.protobuf import text_format
net = text_format.Parse(open("tiny_v1_weights.prototxt").read(), caffe_pb2.NetParameter())
open("tiny_v1_weights.caffemodel", "wb").write(net.SerializeToString())'
run() {  # TOOL IN OUT: the log keeps severity, source and message of each line, then the exit status
  status=0
  "$1" "$2" "$3" 2> "${2%.*}.upgrade.log" || status=$?
  sed -i 's/^\([IWEF]\)[0-9]* [0-9:.]* *[0-9]* /\1 /' "${2%.*}.upgrade.log"
  echo "exit status $status" >> "${2%.*}.upgrade.log"
}
for f in caffenet_deploy_v1 tiny_v0 tiny_v1; do
  run upgrade_net_proto_text $f.prototxt $f.upgraded.prototxt
done
run upgrade_net_proto_binary tiny_v1_weights.caffemodel tiny_v1_weights.upgraded.caffemodel
run upgrade_solver_proto_text legacy_solver.prototxt legacy_solver.upgraded.prototxt
