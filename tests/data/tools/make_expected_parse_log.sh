#!/bin/sh
# Regenerate the expected parse_log tables (*.log.train, *.log.test) with BVLC's
# tools/extra/parse_log.py of the seed (deeppose branch), run by the seed's Python 3 (its one
# Python-2 print statement made a call; nothing else changed):
#   sh make_expected_parse_log.sh
set -e
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
repo=/work/.mirror/Manchery+caffe-deeppose/repo
git -C $repo show deeppose:tools/extra/parse_log.py |
  sed "s/print 'Wrote %s' % output_filename/print('Wrote %s' % output_filename)/" > "$work/parse_log.py"
git -C $repo show deeppose:tools/extra/extract_seconds.py > "$work/extract_seconds.py"
mkdir "$here/parse_log_expected" 2>/dev/null || true
for log in train_classic.log rollover.log; do
  "${SEED_PY:-/opt/seed-caffe/venv/bin/python}" "$work/parse_log.py" "$here/$log" "$here/parse_log_expected"
done
rm -rf "$work"
