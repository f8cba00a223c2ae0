"""HDF5 beyond the golden cases: snapshots through `caffe train`, HDF5Data's dtypes and errors,
HDF5Output's single write."""
import os

import h5py
import numpy as np
import pytest

import caffe
from caffe.tools import caffe_main
from tests.conftest import net_from


@pytest.fixture
def files(golden_files):
    """The golden files as the working directory, without Caffe's HDF5 snapshots."""
    for name in os.listdir("."):
        if name.startswith("h5_snapshot_iter_"):
            os.remove(name)
    return golden_files


def test_caffe_train_hdf5_snapshots_resume_and_weights(files, capsys):
    """`snapshot_format: HDF5` writes .caffemodel.h5/.solverstate.h5 at each snapshot (no temp
    file left), `-snapshot x.solverstate.h5` resumes, `-weights x.caffemodel.h5` finetunes."""
    assert caffe_main.main(["train", "-solver", "h5_snapshot.solver.prototxt"]) == 0
    snaps = sorted(n for n in os.listdir(".") if n.startswith("h5_snapshot_iter_") or n.startswith(".tmp"))
    assert snaps == [f"h5_snapshot_iter_{i}.{ext}" for i in (3, 6, 9) for ext in ("caffemodel.h5", "solverstate.h5")]
    with h5py.File("h5_snapshot_iter_9.solverstate.h5") as f:
        assert f["iter"][0] == 9 and f["learned_net"][()] == b"h5_snapshot_iter_9.caffemodel.h5"
    err = capsys.readouterr().err
    assert "Snapshotting to HDF5 file h5_snapshot_iter_9.caffemodel.h5" in err
    assert "Snapshotting solver state to HDF5 file h5_snapshot_iter_9.solverstate.h5" in err
    assert caffe_main.main(["train", "-solver", "h5_snapshot.solver.prototxt", "-snapshot",
                            "h5_snapshot_iter_9.solverstate.h5"]) == 0
    assert "Resuming from h5_snapshot_iter_9.solverstate.h5" in capsys.readouterr().err
    assert caffe_main.main(["train", "-solver", "h5_snapshot.solver.prototxt", "-weights",
                            "h5_snapshot_iter_3.caffemodel.h5"]) == 0


def test_restore_refuses_wrong_history(files):
    solver = caffe.get_solver("h5_snapshot.solver.prototxt")
    solver.step(3)
    solver.snapshot()
    sgd = caffe.SGDSolver("h5_snapshot.solver.prototxt")  # 1 history blob per param, Adam has 2
    with pytest.raises(caffe.solvers.SolverError, match="4 history blobs, the solver has 2"):
        sgd.restore("h5_snapshot_iter_3.solverstate.h5")


def h5_net(tmp_path, tops=("data", "label"), batch=2, extra=""):
    top = " ".join(f'top: "{t}"' for t in tops)
    text = (f'layer {{ name: "h5" type: "HDF5Data" {top} '
            f'hdf5_data_param {{ source: "{tmp_path / "list.txt"}" batch_size: {batch} }} {extra} }}\n')
    return net_from(tmp_path, {}, text, force_backward=False)


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value


def test_hdf5_data_reads_integers_as_float_and_cycles(tmp_path):
    write_h5(tmp_path / "a.h5", data=np.arange(6, dtype=np.float64).reshape(3, 2), label=np.array([7, 8, 9], np.int32))
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n")
    net = h5_net(tmp_path)
    out = net.forward()
    np.testing.assert_array_equal(out["label"], [7, 8])
    assert out["label"].dtype == np.float32 and out["data"].shape == (2, 2)
    np.testing.assert_array_equal(net.forward()["data"], [[4, 5], [0, 1]])


@pytest.mark.parametrize("datasets, message", [
    (dict(data=np.zeros((3, 2))), "a.h5: dataset 'label': not found"),
    (dict(data=np.zeros((3, 2)), label=np.zeros(4)), "dataset 'label' has 4 rows, dataset 'data' has 3"),
    (dict(data=np.zeros((3, 2)), label=np.array([b"x", b"y", b"z"])), "a.h5: dataset 'label': unsupported datatype"),
])
def test_hdf5_data_bad_files(tmp_path, datasets, message):
    write_h5(tmp_path / "a.h5", **datasets)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n")
    with pytest.raises(caffe.net.NetError, match=message):
        h5_net(tmp_path)


def test_hdf5_data_later_file_must_match(tmp_path):
    write_h5(tmp_path / "a.h5", data=np.zeros((2, 2)), label=np.zeros(2))
    write_h5(tmp_path / "b.h5", data=np.zeros((2, 3)), label=np.zeros(2))
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'} {tmp_path / 'b.h5'}")
    net = h5_net(tmp_path)
    with pytest.raises(ValueError, match=r"b.h5: dataset 'data' has rows of shape \(3,\), the first file's are \(2,\)"):
        net.forward()


@pytest.mark.parametrize("list_text, extra, message", [
    (None, "", "list.txt: cannot read the list of HDF5 files"),
    ("", "", "Must have at least 1 HDF5 filename"),
    ("missing.h5", "", "missing.h5: cannot open as an HDF5 file"),
    ("x.h5", "transform_param { scale: 2 }", "does not transform data"),
])
def test_hdf5_data_bad_setup(tmp_path, monkeypatch, list_text, extra, message):
    monkeypatch.chdir(tmp_path)
    if list_text is not None:
        (tmp_path / "list.txt").write_text(list_text)
    with pytest.raises(caffe.net.NetError, match=message):
        h5_net(tmp_path, extra=extra)


def test_hdf5_output_writes_once(tmp_path):
    out = tmp_path / "out.h5"
    text = f'layer {{ name: "out" type: "HDF5Output" bottom: "d" bottom: "l" hdf5_output_param {{ file_name: "{out}" }} }}\n'
    net = net_from(tmp_path, {"d": (2, 3, 4), "l": (2, 5)}, text, force_backward=False)
    net.forward(d=np.ones((2, 3, 4)), l=np.arange(10).reshape(2, 5))
    with pytest.raises(RuntimeError, match="writes it once per net"):
        net.forward()
    with h5py.File(out) as f:
        assert f["data"].shape == (2, 3, 4, 1) and f["label"].shape == (2, 5, 1, 1)
        np.testing.assert_array_equal(f["label"][()].reshape(2, 5), np.arange(10).reshape(2, 5))
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def test_hdf5_output_refusals(tmp_path):
    text = 'layer { name: "out" type: "HDF5Output" bottom: "d" bottom: "l" hdf5_output_param { file_name: "%s" } }\n'
    with pytest.raises(caffe.net.NetError, match="same batch size"):
        net_from(tmp_path, {"d": (2, 3), "l": (3,)}, text % (tmp_path / "o.h5"), force_backward=False)
    with pytest.raises(caffe.net.NetError, match="Failed to open HDF5 file"):
        net_from(tmp_path, {"d": (2, 3), "l": (2,)}, text % (tmp_path / "no" / "o.h5"), force_backward=False)


def test_hdf5_data_resumes_where_it_stopped(tmp_path):
    """read_position/seek (what a snapshot keeps): a new layer continues the shuffled sequence."""
    from caffe import libc_rand
    write_h5(tmp_path / "a.h5", data=np.arange(10.0).reshape(5, 2), label=np.arange(5.0))
    write_h5(tmp_path / "b.h5", data=np.arange(6.0).reshape(3, 2) + 100, label=np.arange(3.0) + 10)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n{tmp_path / 'b.h5'}\n")
    text = (f'layer {{ name: "h5" type: "HDF5Data" top: "data" top: "label" hdf5_data_param {{ '
            f'source: "{tmp_path / "list.txt"}" batch_size: 3 shuffle: true }} }}\n')
    libc_rand.srand(1)
    first = net_from(tmp_path, {}, text, force_backward=False)
    for _ in range(2):
        first.forward()
    position = first.layers[0].module.read_position()
    want = [first.forward()["label"].copy() for _ in range(4)]
    libc_rand.srand(7)
    second = net_from(tmp_path, {}, text, force_backward=False, name="second.prototxt")
    second.layers[0].module.seek(position)
    np.testing.assert_array_equal([second.forward()["label"].copy() for _ in range(4)], want)


def test_hdf5_snapshot_resumes_exactly(tmp_path, monkeypatch):
    """A run resumed from its .solverstate.h5 (with the data positions and random states of our
    `resume_state` dataset) ends with the weights of the uninterrupted run."""
    from caffe import libc_rand
    monkeypatch.chdir(tmp_path)
    r = np.random.RandomState(0)
    write_h5("a.h5", data=r.randn(7, 3), label=r.randn(7, 2))
    (tmp_path / "list.txt").write_text("a.h5\n")
    (tmp_path / "net.prototxt").write_text(
        'layer { name: "h5" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "list.txt" '
        'batch_size: 3 shuffle: true } }\nlayer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
        'inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "label" top: "loss" }\n')
    (tmp_path / "solver.prototxt").write_text(
        'net: "net.prototxt" base_lr: 0.1 momentum: 0.9 lr_policy: "fixed" max_iter: 6 snapshot: 3 '
        'snapshot_prefix: "s" snapshot_format: HDF5 random_seed: 1 snapshot_after_train: false solver_mode: CPU\n')
    libc_rand.srand(1)
    straight = caffe.get_solver("solver.prototxt")
    straight.solve()
    want = straight.net.params["fc"][0].data.copy()
    libc_rand.srand(5)
    resumed = caffe.get_solver("solver.prototxt")
    resumed.solve("s_iter_3.solverstate.h5")
    np.testing.assert_array_equal(resumed.net.params["fc"][0].data, want)
