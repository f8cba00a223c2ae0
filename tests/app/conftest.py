"""Fixtures and helpers of the application's tests (tests/app): DeepPose stage nets shaped like the
committed ones, a copy of the repository's user-facing files run on a tiny schedule, a dataset
description of two joints, the bytes of a folder's files."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, input_layers, write_net

# the user-facing files of the repository (what a user runs: the driver script, the settings, the
# data and model scripts, the committed nets), copied for the runs of the whole pipeline
REPOSITORY_FILES = ["deeppose_train.sh", "globalvar.py", "data/K2HPD/get_stage.py", "tools/make_synthetic_k2hpd.py",
                    "tools/pdj_vs_iterations.py",
                    *(os.path.relpath(p, ROOT) for d in ("models/deeppose", "models/deeppose_refine")
                      for p in Path(ROOT, d).iterdir() if p.suffix in (".py", ".prototxt"))]
# the tiny schedule of those runs (the driver's DEEPPOSE_* defaults)
TINY = {"DEEPPOSE_SCHEDULE": "cpu", "DEEPPOSE_SYNTH_TRAIN": "16", "DEEPPOSE_SYNTH_TEST": "8",
        "DEEPPOSE_SYNTH_SEED": "0", "DEEPPOSE_ITER1": "2", "DEEPPOSE_ITER2": "2", "DEEPPOSE_BATCH1": "2",
        "DEEPPOSE_BATCH2": "4", "DEEPPOSE_TEST_ITER": "2", "DEEPPOSE_PER_IMAGE": "2"}

# a dataset description file of two joints, its files under d/ (images in d/i, tr.txt, te.txt)
TWO_JOINTS = """from deeppose.dataset import DatasetDescription
DATASET = DatasetDescription(name='two', size=(32, 24), joint_names=('tip', 'base'), limbs=((0, 1),),
    torso_joints=(0, 1), flip_pairs=(), alpha=1.0, root='d', image_dir='i',
    train_annotations='tr.txt', test_annotations='te.txt', image_name_format='{}.png')
"""


def copy_repository(repo):
    """REPOSITORY_FILES copied into the folder `repo`; returns it."""
    for f in REPOSITORY_FILES:
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), repo / f)
    return repo


def run_tiny(args, cwd, env=None):
    """Run a command with the tiny schedule; its output (stdout and the log on stderr)."""
    r = subprocess.run(args, cwd=cwd, env={**os.environ, **TINY, **(env or {})}, capture_output=True, text=True)
    assert r.returncode == 0, f"{args} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def file_bytes(folder):
    """Every file under `folder` with its bytes (to check that nothing changed)."""
    folder = Path(folder)
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def deploy_input_shape(deploy):
    """(N, C, H, W) of a deploy prototxt's Input layer."""
    from caffe.formats import protoio
    from caffe.proto import caffe_pb2
    net = protoio.read_prototxt(deploy, caffe_pb2.NetParameter)
    return tuple(int(d) for l in net.layer if l.type == "Input" for d in l.input_param.shape[0].dim)


@pytest.fixture
def stage_nets(tmp_path, monkeypatch):
    """(stage 1, refiner) ModelFiles of small nets in tmp_path (the working directory) with the
    committed nets' input shapes and outputs for K2HPD (read from models/ and the description):
    an average pooling and `predict`, random weights (<name>.caffemodel) and a mean file."""
    import caffe
    from caffe.formats import protoio
    from deeppose import nets
    from deeppose.datasets import K2HPD
    shapes = [deploy_input_shape(os.path.join(ROOT, f.deploy)) for f in (nets.STAGE1, nets.REFINE)]
    monkeypatch.chdir(tmp_path)
    files = []
    for name, (batch, channels, rows, cols), outputs in (("s1", shapes[0], 2 * K2HPD.num_joints),
                                                         ("s2", shapes[1], 2)):
        mean = np.full((1, channels, rows, cols), 100, np.float32)
        protoio.write_binary_proto(f"{name}_mean.binaryproto", protoio.array_to_blobproto(mean, legacy=True))
        body = ('layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
                'pooling_param { pool: AVE kernel_size: 16 stride: 16 } }\n'
                f'layer {{ name: "predict" type: "InnerProduct" bottom: "pool" top: "predict" inner_product_param {{ '
                f'num_output: {outputs} weight_filler {{ type: "gaussian" std: 1 }} bias_filler {{ type: "constant" value: 1 }} }} }}\n')
        write_net(f"{name}.prototxt", input_layers({"data": (batch, channels, rows, cols)}) + body)
        write_net(f"{name}_train.prototxt", 
                  f'layer {{ name: "data" type: "Data" top: "data" top: "label" transform_param {{ mean_file: "{name}_mean.binaryproto" '
                  f'scale: 0.00390625 }} data_param {{ source: "x" batch_size: 1 backend: LMDB label_num: {outputs} }} }}\n' + body)
        caffe.Net(f"{name}.prototxt", caffe.TEST).save(f"{name}.caffemodel")
        files.append(nets.ModelFiles(f"{name}.prototxt", f"{name}_train.prototxt", f"{name}_solver.prototxt"))
    return files
