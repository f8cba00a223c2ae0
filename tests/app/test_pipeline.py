"""DeepPose application pieces: stage data, preprocessing, the cascade's wiring, the report."""

import json

import cv2
import numpy as np
import pytest

from caffe.formats import protoio
from caffe.proto import caffe_pb2
from pathlib import Path

from deeppose import nets, preprocess, solvers, stage_data, steps
from deeppose.datasets import K2HPD
from deeppose.dataset import flip_joints, image_path, torso_diameter
from deeppose.metrics import PDJ_FRACTIONS

RNG = np.random.default_rng(0)


def random_joints(n=4):
    return RNG.uniform([20, 20], [K2HPD.width - 20, K2HPD.height - 20], (n, K2HPD.num_joints, 2))


# -- stage 1 ------------------------------------------------------------------------------------
def test_stage1_targets_round_trip():
    joints = random_joints()
    t = stage_data.stage1_targets(joints, K2HPD.size)
    assert np.allclose(t + np.array(K2HPD.size) / 2, joints)
    assert np.allclose(stage_data.stage1_joints(t.reshape(len(t), -1), K2HPD.size), joints)


def test_box_targets_are_the_papers_normalisation():
    joints = random_joints()
    t = stage_data.stage1_targets(joints, K2HPD.size, "box")
    assert np.allclose(t, (joints - np.array(K2HPD.size) / 2) / np.array(K2HPD.size))
    assert np.abs(t).max() <= 0.5  # the image border is +-0.5
    assert np.allclose(stage_data.stage1_joints(t.reshape(len(t), -1), K2HPD.size, "box"), joints)
    with pytest.raises(ValueError, match="target units must be one of box, pixels, not 'inches'"):
        stage_data.stage1_targets(joints, K2HPD.size, "inches")


def test_target_units_are_recorded_with_the_stage1_lists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert stage_data.target_units(K2HPD) == "pixels"  # lists made before the record: the seed's units
    path = stage_data.write_target_units(K2HPD, "box")
    assert path == Path(K2HPD.root) / "stage1" / "targets.json" and stage_data.target_units(K2HPD) == "box"
    path.write_text("{")
    with pytest.raises(ValueError, match="targets.json: not a record of target units"):
        stage_data.target_units(K2HPD)
    path.write_text('{"units": "feet"}')
    with pytest.raises(ValueError, match="targets.json: units 'feet'"):
        stage_data.target_units(K2HPD)


def test_mirrored_sample_swaps_left_and_right(tmp_path):
    image = np.zeros((K2HPD.height, K2HPD.width), np.uint8)
    image[:, :10] = 255  # a bright band on the left edge
    path = tmp_path / "00000001.png"
    cv2.imwrite(str(path), image)
    joints = random_joints(1)[0]
    out, mjoints = stage_data.mirror_sample(path, joints, K2HPD)
    assert out.name == "00000001m.png"
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[:, -10:].min() == 255
    r, l = K2HPD.flip_pairs[0]
    assert np.allclose(mjoints[l], [K2HPD.width - joints[r, 0], joints[r, 1]])
    assert np.allclose(mjoints[r], [K2HPD.width - joints[l, 0], joints[l, 1]])
    assert np.allclose(flip_joints(mjoints, K2HPD.width, K2HPD), joints)  # an involution


def test_stage1_lists_hold_mirrors_and_a_held_out_part(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from deeppose.dataset import write_annotations
    (tmp_path / K2HPD.root / K2HPD.image_dir).mkdir(parents=True)
    items = []
    for i in range(10):
        name = K2HPD.image_name(i)
        cv2.imwrite(str(tmp_path / K2HPD.root / K2HPD.image_dir / name), np.full((K2HPD.height, K2HPD.width), i, np.uint8))
        items.append((name, random_joints(1)[0]))
    write_annotations(tmp_path / K2HPD.root / K2HPD.train_annotations, items)
    write_annotations(tmp_path / K2HPD.root / K2HPD.test_annotations, items[:3])
    lists = steps.make_stage1_lists(K2HPD, 1, val_fraction=0.2, units="box")
    assert stage_data.target_units(K2HPD) == "box"
    train, targets = stage_data.read_list(lists["train"])
    assert np.abs(targets).max() <= 0.5
    val, _ = stage_data.read_list(lists["val"])
    assert len(train) == 16 and len(val) == 2 and len(stage_data.read_list(lists["test"])[0]) == 3
    assert sum(n.endswith("m.png") for n in train) == 8
    assert not {n.replace("m.png", ".png") for n in train} & set(val)
    names, joints = stage_data.read_stage1_list(lists["train"], K2HPD)
    truth = dict((str(image_path(n, K2HPD)), j) for n, j in items)
    for n, j in zip(names, joints):
        expected = flip_joints(truth[n.replace("m.png", ".png")], K2HPD.width, K2HPD) if n.endswith("m.png") else truth[n]
        assert np.allclose(j, expected, atol=1e-3)  # annotations carry 3 decimals
    assert stage_data.frames(K2HPD) == {}  # images of the description's size are listed as they are
    assert not (stage_data.stage_dir(1, K2HPD) / stage_data.FRAMED_DIR).exists()


# -- images of any size: the description's frame --------------------------------------------------
FRAME = (320, 240)


@pytest.mark.parametrize("size", [(160, 40), (100, 400), (33, 17), (320, 200)])
def test_letterbox_keeps_the_aspect_ratio_centred_and_padded(size):
    w, h = size
    framed, frame = preprocess.letterbox(np.full((h, w, 3), 200, np.uint8), FRAME)
    assert framed.shape == (240, 320, 3)
    assert frame.scale == pytest.approx(min(320 / w, 240 / h))  # one scale factor
    (x0, y0), (x1, y1) = frame.to_frame([[0, 0], [w, h]])
    assert np.allclose([x0 + x1, y0 + y1], FRAME)  # centred
    assert np.isclose((x1 - x0) / (y1 - y0), w / h) and np.isclose(max((x1 - x0) / 320, (y1 - y0) / 240), 1)
    ys, xs = np.mgrid[0:240, 0:320] + 0.5
    m = 1 + frame.scale / 2  # bilinear interpolation blends the image's border pixels with the padding
    inside = (xs > x0 + m) & (xs < x1 - m) & (ys > y0 + m) & (ys < y1 - m)
    outside = (xs < x0 - m) | (xs > x1 + m) | (ys < y0 - m) | (ys > y1 + m)
    assert (framed[inside] == 200).all() and (framed[outside] == 0).all()  # zero padding


def test_letterbox_moves_the_joints_with_the_image():
    image = np.zeros((150, 90), np.uint8)  # grey, as training images are read
    image[100:106, 30:36] = 255  # a block centred on (33, 103)
    framed, frame = preprocess.letterbox(image, FRAME)
    ys, xs = np.mgrid[0:240, 0:320] + 0.5
    weight = framed.astype(float) / framed.sum()
    assert np.allclose([(xs * weight).sum(), (ys * weight).sum()], frame.to_frame([33, 103]), atol=0.05)
    joints = RNG.uniform(0, 150, (3, K2HPD.num_joints, 2))
    assert np.allclose(frame.from_frame(frame.to_frame(joints)), joints)


def test_an_image_of_the_frames_size_is_its_own_frame():
    image = RNG.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    framed, frame = preprocess.letterbox(image, FRAME)
    assert framed is image and frame.identity and frame == preprocess.Frame()
    joints = np.array([[-0.0, 1.5], [2.25, -3.0]])
    assert np.array_equal(frame.to_frame(joints), joints) and np.array_equal(frame.from_frame(joints), joints)
    assert np.signbit(frame.to_frame(joints)[0, 0])  # the very same numbers


SIZES = [(256, 212), (128, 53), (300, 424)]  # K2HPD's own, a wide one, a tall one


@pytest.fixture
def mixed_sizes(tmp_path, monkeypatch):
    """K2HPD's layout with 10 training and 3 test images of the sizes SIZES in turn, random joints
    in each image's own pixels."""
    monkeypatch.chdir(tmp_path)
    from deeppose.dataset import read_split, write_annotations
    (tmp_path / K2HPD.root / K2HPD.image_dir).mkdir(parents=True)
    items = []
    for i in range(13):
        w, h = SIZES[i % 3]
        name = K2HPD.image_name(i)
        cv2.imwrite(str(tmp_path / K2HPD.root / K2HPD.image_dir / name), RNG.integers(0, 255, (h, w), dtype=np.uint8))
        items.append((name, RNG.uniform(0, (w, h), (K2HPD.num_joints, 2))))
    write_annotations(tmp_path / K2HPD.root / K2HPD.train_annotations, items[:10])
    write_annotations(tmp_path / K2HPD.root / K2HPD.test_annotations, items[10:])
    return {str(image_path(n, K2HPD)): j for split in ("train", "test") for n, j in read_split(K2HPD, split)}


def test_stage1_lists_letterbox_images_of_other_sizes(mixed_sizes):
    truth = mixed_sizes
    lists = steps.make_stage1_lists(K2HPD, 1, val_fraction=0.2)
    record = stage_data.frames(K2HPD)
    assert sorted(image for image, _ in record.values()) == sorted(n for n in truth if cv2.imread(n).shape[:2] != (212, 256))
    for copy, (image, frame) in record.items():
        assert Path(copy).parent == stage_data.stage_dir(1, K2HPD) / stage_data.FRAMED_DIR
        assert frame == preprocess.Frame.fit(cv2.imread(image).shape[1::-1], K2HPD.size)
        assert np.array_equal(cv2.imread(copy, cv2.IMREAD_UNCHANGED),
                              preprocess.letterbox(cv2.imread(image, cv2.IMREAD_UNCHANGED), K2HPD.size)[0])
    for split in stage_data.STAGE1_SPLITS:
        names, joints = stage_data.read_stage1_list(lists[split], K2HPD)
        assert all(cv2.imread(n).shape[:2] == (212, 256) for n in names)  # every listed image is in the frame
        images, own = stage_data.in_images(K2HPD, names, joints)
        for listed, image, j, o in zip(names, images, joints, own):
            if listed.endswith("m.png"):  # a mirror, made in the frame from the listed image
                original = listed[:-len("m.png")] + ".png"
                assert image == listed
                assert np.array_equal(cv2.imread(listed), cv2.flip(cv2.imread(original), 1))
                unmirrored = flip_joints(j, K2HPD.width, K2HPD)
                assert np.allclose(stage_data.in_images(K2HPD, [original], unmirrored[None])[1][0],
                                   truth[stage_data.in_images(K2HPD, [original])[0][0]], atol=1e-5)
            else:
                assert np.allclose(o, truth[image], atol=1e-5)  # back in the image's own pixels
        back = stage_data.in_frame(K2HPD, images, own)
        assert back[0] == names and np.allclose(back[1], joints)


def test_two_images_of_one_letterboxed_name_are_refused(mixed_sizes):
    wide = Path(image_path(K2HPD.image_name(1), K2HPD))
    cv2.imwrite(str(wide.with_suffix(".jpg")), cv2.imread(str(wide)))
    annotations = Path(K2HPD.root) / K2HPD.train_annotations
    annotations.write_text(annotations.read_text() + wide.with_suffix(".jpg").name + " " + ",".join(["1"] * 30) + "\n")
    with pytest.raises(ValueError, match=r"00000001\.(png|jpg) and \S+/00000001\.(png|jpg) would both be letterboxed "
                                         r"into data/K2HPD/stage1/framed/00000001\.png: rename one"):
        steps.make_stage1_lists(K2HPD, 1, val_fraction=0)


def test_a_damaged_frames_record_is_named(mixed_sizes):
    steps.make_stage1_lists(K2HPD, 1)
    (stage_data.stage_dir(1, K2HPD) / "frames.json").write_text('{"x": {"scale": 1}}')
    with pytest.raises(ValueError, match=r"stage1/frames.json: not a record of frames"):
        stage_data.frames(K2HPD)


# -- crops and stage s >= 2 targets -----------------------------------------------------------------
def test_crop_is_padded_outside_the_image():
    image = np.full((K2HPD.height, K2HPD.width, 3), 200, np.uint8)
    c = preprocess.crop(image, (0.0, 0.0), 40.0, 64)  # centred on the top-left corner
    assert c.shape == (64, 64, 3)
    assert c[:28, :28].max() == 0 and c[36:, 36:].min() == 200
    far = preprocess.crop(image, (-500.0, 900.0), 40.0, 64)  # wholly outside: all padding
    assert far.max() == 0


def test_crop_samples_the_right_place():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:50, 60:70] = 255  # a 10x10 square, centre (65, 45) in continuous coordinates
    c = preprocess.crop(image, (65.0, 45.0), 20.0, 20)  # side 20 at scale 1: the square in the middle
    assert c[5:15, 5:15].min() == 255 and c[:5].max() == 0 and c[:, 15:].max() == 0


def test_refine_targets_round_trip_and_border():
    true = random_joints(3)
    centre = true + RNG.normal(0, 5, true.shape)
    side = stage_data.crop_side(true, K2HPD.size, K2HPD)[:, None].repeat(K2HPD.num_joints, 1)
    t = stage_data.refine_targets(true, centre, side, 64)
    assert np.allclose(stage_data.apply_refinement(centre, t, side, 64), true)
    edge = stage_data.refine_targets(np.array([[10.0 + 20, 5.0]]), np.array([[10.0, 5.0]]), np.array([40.0]), 64)
    assert np.allclose(edge, [[32, 0]])  # the crop border is +-out/2
    t = stage_data.refine_targets(true, centre, side, 64, "box")
    assert np.allclose(stage_data.apply_refinement(centre, t, side, 64, "box"), true)
    edge = stage_data.refine_targets(np.array([[10.0 + 20, 5.0]]), np.array([[10.0, 5.0]]), np.array([40.0]), 64, "box")
    assert np.allclose(edge, [[0.5, 0]])  # in box units the crop border is +-0.5


def test_degenerate_torso_diameter_is_floored():
    joints = random_joints(2)
    a, b = K2HPD.torso_joints
    joints[0, b] = joints[0, a]  # torso joints on top of each other
    assert torso_diameter(joints, K2HPD)[0] == 0
    side = stage_data.crop_side(joints, K2HPD.size, K2HPD)
    floor = K2HPD.alpha * stage_data.MIN_DIAMETER_FRACTION * max(K2HPD.size)
    assert side[0] == pytest.approx(floor) and side[1] >= floor
    image = np.zeros((K2HPD.height, K2HPD.width, 3), np.uint8)
    assert preprocess.crop(image, joints[0, a], side[0], 64).shape == (64, 64, 3)


def test_simulated_displacements_follow_the_fitted_distribution():
    n = 4000
    true = random_joints(n)
    diam = stage_data.floored_diameter(torso_diameter(true, K2HPD), K2HPD.size)
    mean = RNG.normal(0, 0.1, (K2HPD.num_joints, 2))
    scale = RNG.uniform(0.05, 0.3, (K2HPD.num_joints, 2))
    pred = true + (mean + scale * RNG.standard_normal((n, K2HPD.num_joints, 2))) * diam[:, None, None]
    model = stage_data.DisplacementModel.fit(pred, true, diam)
    assert np.allclose(model.mean, mean, atol=0.02)
    assert np.allclose(np.sqrt(np.diagonal(model.cov, axis1=1, axis2=2)), scale, rtol=0.1)
    rng = np.random.default_rng(1)
    idx = stage_data.choose_joints(rng, n, 2, K2HPD.num_joints)
    assert all(len(set(row)) == 2 for row in idx[:50])
    centres = stage_data.simulated_centres(rng, true, idx, model, diam)
    picked = np.take_along_axis(true, idx[..., None], axis=1)
    delta = (centres - picked) / diam[:, None, None]
    for j in range(K2HPD.num_joints):
        d = delta[idx == j]
        assert np.allclose(d.mean(0), mean[j], atol=0.03)
        assert np.allclose(d.std(0), scale[j], rtol=0.15)


def test_displacement_model_json_record(tmp_path):
    model = stage_data.DisplacementModel(RNG.normal(size=(K2HPD.num_joints, 2)), np.tile(np.eye(2), (K2HPD.num_joints, 1, 1)))
    model.to_json(tmp_path / "d.json")
    record = json.loads((tmp_path / "d.json").read_text())
    assert np.allclose(record["mean"], model.mean) and np.allclose(record["cov"], model.cov)


def test_list_files_round_trip(tmp_path):
    rows = [("a/b.png", [1.5, -2.25]), ("c.png", [0, 3])]
    names, values = stage_data.read_list(stage_data.write_list(tmp_path / "l.txt", rows))
    assert names == ["a/b.png", "c.png"] and np.allclose(values, [[1.5, -2.25], [0, 3]])


@pytest.mark.parametrize("lines, error", [
    (["a.png 1 2", "b.png 1 x"], r"l.txt:2: expected `path label1 label2 ... \(float labels\)`, got 'b.png 1 x'"),
    (["a.png 1 2", "b.png 1 nan"], r"l.txt:2: label 'nan' is not a finite number"),
    (["a.png 1 2", "", "c.png 1 2 3"], r"l.txt:3: 3 labels, but line 1 has 2: every line needs the same number"),
    (["a.png 1 2", "b.png"], r"l.txt:2: expected .*\(no labels\)"),
])
def test_list_files_are_read_as_the_database_tool_reads_them(tmp_path, lines, error):
    """One reader (caffe.formats.image_list's, convert_imageset_multilabel's): a bad line is named by file
    and line; blank lines are skipped."""
    path = tmp_path / "l.txt"
    path.write_text("\n".join(lines[:-1]) + "\n")
    assert stage_data.read_list(path)[0] == [line.split()[0] for line in lines[:-1] if line]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=error):
        stage_data.read_list(path)
    with pytest.raises(ValueError, match=r"missing.txt: cannot read the list file"):
        stage_data.read_list(tmp_path / "missing.txt")


# -- preprocessing: one function for training records and deployment --------------------------
def test_net_image_resizes_like_convert_imageset(tmp_path):
    from caffe.formats.image_list import read_image
    image = RNG.integers(0, 255, (K2HPD.height, K2HPD.width), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "i.png"), image)
    ours = preprocess.net_image(preprocess.load_image(tmp_path / "i.png", K2HPD), (227, 227))
    theirs = read_image(str(tmp_path / "i.png"), 227, 227, True)
    assert np.array_equal(ours, theirs.transpose(2, 0, 1))


# -- solvers ---------------------------------------------------------------------------------------
def test_derived_solver_overrides_and_keeps_the_rest(tmp_path, capfd):
    src = "models/deeppose/deeppose_solver.prototxt"
    dst = solvers.derive_solver(src, tmp_path / "s.prototxt", {"max_iter": 7, "solver_mode": "CPU", "test_iter": [3],
                                                               "random_seed": 5, "type": "Adam"}, train_batch=2)
    logged = capfd.readouterr().err
    for change in ("max_iter 120000 -> 7", "solver_mode GPU -> 'CPU'", "test_iter [100] -> [3]", "type 'SGD' -> 'Adam'"):
        assert f"s.prototxt: {change} (from {src})" in logged
    p = protoio.read_prototxt(dst, caffe_pb2.SolverParameter)
    committed = protoio.read_prototxt(src, caffe_pb2.SolverParameter)
    assert p.max_iter == 7 and p.solver_mode == caffe_pb2.SolverParameter.CPU and list(p.test_iter) == [3]
    assert p.random_seed == 5
    assert p.base_lr == committed.base_lr and p.snapshot_prefix == committed.snapshot_prefix
    batches = {r.phase: l.data_param.batch_size for l in p.net_param.layer if l.type == "Data" for r in l.include}
    assert batches == {caffe_pb2.TRAIN: 2, caffe_pb2.TEST: 1}
    assert solvers.final_snapshot(dst).name == "deeppose_iter_7.caffemodel"
    other = solvers.derive_solver(src, tmp_path / "n.prototxt", {}, net="models/deeppose/run/x.prototxt")
    assert protoio.read_prototxt(other, caffe_pb2.SolverParameter).net == "models/deeppose/run/x.prototxt"
    further = solvers.derive_solver(dst, tmp_path / "f.prototxt", {"max_iter": 14})  # keeps the inlined net
    assert protoio.read_prototxt(further, caffe_pb2.SolverParameter).net_param == p.net_param
    with pytest.raises(ValueError, match="no field 'max_iters'"):
        solvers.derive_solver(src, tmp_path / "x.prototxt", {"max_iters": 7})
    with pytest.raises(ValueError, match="solver_mode has no value 'TPU'"):
        solvers.derive_solver(src, tmp_path / "x.prototxt", {"solver_mode": "TPU"})


def test_an_interrupted_run_resumes_from_its_newest_state(tmp_path):
    prefix = tmp_path / "snap" / "net"
    solver = solvers.derive_solver("models/deeppose/deeppose_solver.prototxt", tmp_path / "s.prototxt",
                                   {"max_iter": 300, "snapshot_prefix": str(prefix)})
    assert solvers.latest_state(solver) is None
    prefix.parent.mkdir()
    for n in (100, 200, 300):  # 300 is the finished run's own snapshot, not a resume point
        (prefix.parent / f"net_iter_{n}.solverstate").write_bytes(b"")
    assert solvers.latest_state(solver).name == "net_iter_200.solverstate"


def test_committed_schedule_is_the_seeds():
    for d, wd in (("deeppose", 0.005), ("deeppose_refine", 0.001)):
        p = protoio.read_prototxt(f"models/{d}/{d}_solver.prototxt", caffe_pb2.SolverParameter)
        assert (p.base_lr, p.momentum, p.weight_decay, p.lr_policy, p.gamma, p.power) == \
            (pytest.approx(1e-4), pytest.approx(0.9), pytest.approx(wd), "inv", pytest.approx(1e-4), 0.75)
        assert (p.max_iter, p.snapshot, p.solver_mode, p.test_iter) == (120000, 20000, caffe_pb2.SolverParameter.GPU, [100])


def test_training_and_deploy_nets_agree():
    for deploy, train, outputs in (("models/deeppose/deeppose.prototxt", "models/deeppose/deeppose_train_test.prototxt", 2 * K2HPD.num_joints),
                                   ("models/deeppose_refine/deeppose_refine.prototxt",
                                    "models/deeppose_refine/deeppose_refine_train_test.prototxt", 2)):
        d = protoio.read_prototxt(deploy, caffe_pb2.NetParameter)
        t = protoio.read_prototxt(train, caffe_pb2.NetParameter)
        dl = [(l.name, l.type) for l in d.layer if l.type != "Input"]
        tl = [(l.name, l.type) for l in t.layer if l.type not in ("Data", "EuclideanLoss")]
        assert dl == tl
        data = [l for l in t.layer if l.type == "Data"]
        assert all(l.data_param.label_num == outputs for l in data)
        loss = [l for l in t.layer if l.type == "EuclideanLoss"][0]
        assert loss.loss_param.normalization == caffe_pb2.LossParameter.FULL
        assert [l for l in t.layer if l.name == "predict"][0].inner_product_param.num_output == outputs
    assert nets.input_size("models/deeppose_refine/deeppose_refine.prototxt") == (64, 64)
    assert nets.data_files("models/deeppose/deeppose_train_test.prototxt") == nets.DataFiles(
        "models/deeppose/train_data_lmdb", "models/deeppose/test_data_lmdb", "models/deeppose/train_mean.binaryproto",
        "LMDB", "LMDB")


def test_data_files_give_the_data_layers_backends(tmp_path):
    """The pipeline writes each database of the kind its Data layer reads: a layer without
    `backend` reads a LevelDB (Caffe's default)."""
    train = Path("models/deeppose/deeppose_train_test.prototxt").read_text()
    at = train.index("backend: LMDB")
    path = tmp_path / "train.prototxt"
    path.write_text(train[:at] + train[at + len("backend: LMDB"):])
    assert (nets.data_files(path).train_backend, nets.data_files(path).test_backend) == ("LEVELDB", "LMDB")


def test_nets_fitted_to_a_description_are_run_local_copies(tmp_path, monkeypatch):
    """A 14-joint description: the committed nets are read, run-local copies written with exactly
    the joint-dependent fields changed; the K2HPD description uses the committed files."""
    import shutil
    from deeppose.datasets import LSP
    assert nets.stage_nets(K2HPD) == (nets.STAGE1, nets.REFINE)
    shutil.copytree("models", tmp_path / "models", ignore=shutil.ignore_patterns("run", "*_lmdb", "snapshot"))
    monkeypatch.chdir(tmp_path)
    stage1, refine = nets.stage_nets(LSP)
    assert stage1.deploy == "models/deeppose/run/deeppose.prototxt" and stage1.solver == nets.STAGE1.solver
    nets.check_stage1(LSP, stage1)
    nets.check_refiner(LSP, refine)
    for committed, derived in ((nets.STAGE1.deploy, stage1.deploy), (nets.STAGE1.train, stage1.train),
                               (nets.REFINE.deploy, refine.deploy), (nets.REFINE.train, refine.train)):
        a, b = (protoio.read_prototxt(f, caffe_pb2.NetParameter) for f in (committed, derived))
        diffs = [(l.name, str(l.inner_product_param.num_output), str(l.data_param.label_num), str(l.input_param.shape))
                 for l, m in zip(a.layer, b.layer) if l != m]
        assert len(a.layer) == len(b.layer) and len(diffs) == {"deeppose.prototxt": 1, "deeppose_train_test.prototxt": 3,
                                                               "deeppose_refine.prototxt": 1,
                                                               "deeppose_refine_train_test.prototxt": 0}[Path(derived).name]
    assert nets.input_size(refine.deploy) == (64, 64)
    assert protoio.read_prototxt(refine.deploy, caffe_pb2.NetParameter).layer[0].input_param.shape[0].dim[0] == 14


# -- cascade and report with an untrained net ----------------------------------------------------
def test_cascade_batches_equal_single_images(stage_nets):
    from deeppose.cascade import Cascade
    s1, s2 = stage_nets
    images = [RNG.integers(0, 255, (K2HPD.height, K2HPD.width, 3), dtype=np.uint8) for _ in range(5)]
    cascade = Cascade(K2HPD, "s1.caffemodel", ["s2.caffemodel", "s2.caffemodel"], batch=2, stage1=s1, refine=s2)
    together = cascade.predict(images)
    assert len(together) == 3 and all(p.shape == (5, K2HPD.num_joints, 2) for p in together)
    alone = [cascade.predict([im]) for im in images]
    for s in range(3):
        assert np.allclose(together[s], np.concatenate([a[s] for a in alone]), atol=1e-3)
    # stage 1: the net's output is the offset from the image centre
    raw = cascade.stage1.run(np.stack([preprocess.net_image(im, cascade.stage1.size) for im in images]))
    assert np.allclose(together[0], raw.reshape(5, -1, 2) + np.array([K2HPD.width, K2HPD.height]) / 2, atol=1e-4)
    # stage 2 moves each joint by output / crop_px x crop side
    crop_px = cascade.refiners[0].size[0]
    side = stage_data.crop_side(together[0], K2HPD.size, K2HPD)
    crop = preprocess.crop(images[0], together[0][0, 0], side[0], crop_px).transpose(2, 0, 1)
    delta = cascade.refiners[0].run(crop[None])[0]
    assert np.allclose(together[1][0, 0], together[0][0, 0] + delta * side[0] / crop_px, atol=1e-3)


def test_cascade_letterboxes_an_image_of_another_size_and_maps_back(stage_nets):
    from deeppose.cascade import Cascade
    s1, s2 = stage_nets
    cascade = Cascade(K2HPD, "s1.caffemodel", ["s2.caffemodel"], batch=2, stage1=s1, refine=s2)
    images = [RNG.integers(0, 255, (h, w, 3), dtype=np.uint8) for w, h in SIZES]
    framed = [preprocess.letterbox(im, K2HPD.size) for im in images]
    preds = cascade.predict(images)
    in_frame = cascade.predict([im for im, _ in framed])  # the letterboxed images are their own frame
    for stage, framed_stage in zip(preds, in_frame):
        for p, q, (_, frame) in zip(stage, framed_stage, framed):
            assert np.allclose(p, frame.from_frame(q), atol=1e-4)
    assert np.array_equal(preds[0][0], in_frame[0][0])  # K2HPD's size: the same numbers


def test_report_structure():
    from deeppose.evaluate import scores
    truth = random_joints(6)
    s = scores(truth + 1.0, truth, K2HPD)
    assert set(s) == {"loss", "pcp", "pcp_per_limb", "pdj", "pdj_per_joint", "mean_error_px"}
    assert list(s["pdj"]) == [f"{f:.2f}" for f in PDJ_FRACTIONS]
    assert s["loss"] == pytest.approx(0.5) and s["pcp"] == 1.0
    assert set(s["mean_error_px"]) == set(K2HPD.joint_names) and len(s["pcp_per_limb"]) == len(K2HPD.limbs)
    json.dumps(s)


def test_commands_report_bad_input_in_one_line(tmp_path):
    from deeppose.cli import predict_main
    with pytest.raises(SystemExit, match=r"^error: cannot read image .*x\.png$"):
        predict_main([str(tmp_path / "missing.caffemodel"), str(tmp_path / "x.png")], n_models=1)


# -- the driver's schedule -------------------------------------------------------------------------
def test_driver_derives_the_solvers_of_the_schedule(tmp_path, monkeypatch):
    """Every schedule trains from a run-local solver with the run's seed as random_seed; the CPU
    schedule's options (their defaults from DEEPPOSE_*) set max_iter, snapshot, batch; the paths
    come from the nets and solvers."""
    import shutil
    import torch
    from deeppose import driver
    shutil.copytree("models", tmp_path / "models", ignore=shutil.ignore_patterns("run", "*_lmdb", "snapshot"))
    shutil.copy("globalvar.py", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("DEEPPOSE_ITER2", "9")
    run = driver.Run(driver.parser().parse_args(["--schedule", "cpu", "--iter1", "5", "--batch1", "4", "--seed", "7",
                                                 "--solver2", "lr_policy=poly power=2 base_lr=3e-4"]))
    s1, s2 = run.stages
    p1, p2 = (protoio.read_prototxt(s.solver, caffe_pb2.SolverParameter) for s in run.stages)
    assert (p1.max_iter, p1.snapshot, p1.random_seed, p1.solver_mode) == (5, 5, 7, caffe_pb2.SolverParameter.CPU)
    assert (p1.lr_policy, p1.base_lr) == ("fixed", pytest.approx(1e-4))  # CPU_SOLVER's
    assert (p2.max_iter, p2.random_seed, p2.lr_policy, p2.power, p2.type) == (9, 7, "poly", 2, "Adam")
    assert p2.base_lr == pytest.approx(3e-4)
    assert [l.data_param.batch_size for l in p1.net_param.layer if l.type == "Data"] == [4, 1]
    assert s1.final == Path("models/deeppose/snapshot/deeppose_iter_5.caffemodel")
    assert s2.data.test_db == "models/deeppose_refine/val_data_lmdb" and s2.log == Path("models/deeppose_refine/deeppose_refine.log")
    run = driver.Run(driver.parser().parse_args(["--schedule", "full"]))
    p1 = protoio.read_prototxt(run.stages[0].solver, caffe_pb2.SolverParameter)
    assert (p1.max_iter, p1.random_seed, p1.solver_mode, p1.net) == (120000, 0, caffe_pb2.SolverParameter.CPU,
                                                                     "models/deeppose/deeppose_train_test.prototxt")
    assert run.stages[0].final.name == "deeppose_iter_120000.caffemodel" and run.gpus == []
