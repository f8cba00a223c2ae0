#!/bin/sh
# Regenerate extract_features_expected.npz with the real (seed) Caffe's extract_features:
#   . /opt/seed-caffe/env.sh && sh make_expected.sh
set -e
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
cp -r "$here/../../golden/files/." "$work"
cd "$work"
extract_features tiny.caffemodel "$here/features_net.prototxt" fc,pool fc_lmdb,pool_lmdb 2 lmdb CPU 2> extract.log
"${SEED_PY:-/opt/seed-caffe/venv/bin/python}" - "$here/extract_features_expected.npz" <<'PY'
import sys, lmdb, numpy as np
from caffe.proto import caffe_pb2
out = {}
for name in ("fc", "pool"):
    env = lmdb.open(name + "_lmdb", readonly=True, lock=False)
    with env.begin() as txn:
        keys, values, dims = [], [], []
        for k, v in txn.cursor():
            d = caffe_pb2.Datum.FromString(v)
            keys.append(k.decode()); values.append(list(d.float_data)); dims.append((d.channels, d.height, d.width))
    out[name + "_keys"] = np.array(keys); out[name + "_values"] = np.array(values, np.float32)
    out[name + "_dims"] = np.array(dims)
np.savez(sys.argv[1], **out)
PY
sed 's/^\([IWEF]\)[0-9]* [0-9:.]* *[0-9]* /\1 /' extract.log | grep '^[IWEF] extract_features' > "$here/extract_features_expected.log"
rm -rf "$work"
