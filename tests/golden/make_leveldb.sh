#!/bin/sh
# Regenerate the LevelDB golden files of files/ with the real (seed) Caffe (see README.md, "LevelDB"):
#   . /opt/seed-caffe/env.sh && sh tests/golden/make_leveldb.sh
# Caffe's tools write multilabel_leveldb/ and int_leveldb/ from the images and lists of files/; Caffe's
# Data layer (pycaffe) reads multilabel_leveldb through data_leveldb.prototxt (no `backend`: LevelDB,
# the default) -> leveldb_batches.npz; our convert_imageset_multilabel -backend leveldb writes
# ours_multilabel_leveldb/, and Caffe's compute_image_mean -backend leveldb reads it ->
# mean_ours_leveldb.binaryproto. Opening a LevelDB writes to it (its log, manifest, LOCK, LOG), so
# the databases are copied as the tools left them, before anything reads them, without LOCK and
# LOG (LevelDB recreates both).
set -e
here="$(cd "$(dirname "$0")" && pwd)"
files="$here/files"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
cp -r "$files/images" "$files/list_multilabel.txt" "$files/list_int.txt" "$files/mean.binaryproto" "$work"
cd "$work"
export GLOG_logtostderr=1
convert_imageset_multilabel -backend leveldb -resize_height=16 -resize_width=16 "" list_multilabel.txt multilabel_leveldb
convert_imageset -backend leveldb -resize_height=16 -resize_width=16 -shuffle=false "" list_int.txt int_leveldb
PYTHONPATH="$repo/caffe-deeppose/python:$repo" "${OUR_PY:-python3}" -c \
  'import sys; from caffe.tools.convert_imageset import main_multilabel; sys.exit(main_multilabel())' \
  -backend leveldb -resize_height=16 -resize_width=16 "" list_multilabel.txt ours_multilabel_leveldb
mkdir pristine
for db in multilabel_leveldb int_leveldb ours_multilabel_leveldb; do
  cp -r "$db" pristine/
  rm -f "pristine/$db/LOCK" "pristine/$db/LOG"
done
compute_image_mean -backend leveldb ours_multilabel_leveldb mean_ours_leveldb.binaryproto
cat > data_leveldb.prototxt <<'EOF'
name: "data_leveldb"
state {
  phase: TRAIN
}
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  transform_param {
    scale: 0.00390625
    mean_file: "mean.binaryproto"
  }
  data_param {
    source: "multilabel_leveldb"
    batch_size: 4
    label_num: 4
  }
}
EOF
"${SEED_PY:-/opt/seed-caffe/venv/bin/python}" - <<'PY'
import io, zipfile
import caffe, numpy as np
caffe.set_mode_cpu()
net = caffe.Net("data_leveldb.prototxt", caffe.TRAIN)
data, label = [], []
for _ in range(3):  # records 0-3, 4 5 0 1, 2-5: the Data layer wraps
    net.forward()
    data.append(net.blobs["data"].data.copy())
    label.append(net.blobs["label"].data.copy())
with zipfile.ZipFile("leveldb_batches.npz", "w", zipfile.ZIP_DEFLATED) as zf:  # byte-identical across runs
    for key, value in (("train_data", np.array(data)), ("train_label", np.array(label))):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, value, allow_pickle=False)
        zf.writestr(zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue(),
                    compress_type=zipfile.ZIP_DEFLATED)
PY
for db in multilabel_leveldb int_leveldb ours_multilabel_leveldb; do
  rm -rf "$files/$db"
  cp -r "pristine/$db" "$files/$db"
done
cp data_leveldb.prototxt leveldb_batches.npz mean_ours_leveldb.binaryproto "$files/"
rm -rf "$work"
