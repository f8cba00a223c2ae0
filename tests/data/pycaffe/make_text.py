"""Write the text of the messages of text_cases.py as the real Caffe writes it (see README.md):
`text_<case>.prototxt`, pycaffe's `str()`; `cpp_<case>.prototxt`, that text read and written back
by C++ (the real upgrade_net_proto_text / upgrade_solver_proto_text: WriteProtoToTextFile).
tests/engine/test_prototext.py compares ours to them byte for byte.

Run with the real Caffe's python and tools (BVLC Caffe 1.0 + DeepPose patches, built at /opt/seed-caffe):
    (source /opt/seed-caffe/env.sh; $SEED_PY tests/data/pycaffe/make_text.py tests/data/pycaffe)
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import caffe  # noqa: E402,F401  (the real pycaffe, from PYTHONPATH)
import text_cases  # noqa: E402

CPP_TOOLS = {"every_kind": "upgrade_net_proto_text", "solver": "upgrade_solver_proto_text"}


def main(out):
    for name, fn in text_cases.CASES.items():
        path = os.path.join(out, f"text_{name}.prototxt")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(str(fn()))
        if name in CPP_TOOLS:
            subprocess.run([CPP_TOOLS[name], path, os.path.join(out, f"cpp_{name}.prototxt")], check=True)


if __name__ == "__main__":
    main(sys.argv[1])
