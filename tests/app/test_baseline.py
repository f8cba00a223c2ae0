"""The one mean-pose baseline: the mean of stage 1's training list (the training set as the Data
layer sees it), the same numbers in the accuracy report and in tools/baseline_mean_pose.py."""
import importlib.util
import os

import numpy as np
import pytest

from deeppose import stage_data
from deeppose.dataset import DatasetDescription, write_annotations
from deeppose.evaluate import mean_pose, mean_pose_baseline, scores
from tests.app.conftest import TWO_JOINTS
from tests.conftest import ROOT


@pytest.fixture
def two(tmp_path, monkeypatch):
    """A two-joint dataset (description file two.py) with a stage-1 training list and a test split."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.py").write_text(TWO_JOINTS)
    namespace = {}
    exec(TWO_JOINTS, namespace)
    desc: DatasetDescription = namespace["DATASET"]
    rng = np.random.default_rng(0)
    targets = rng.uniform(-10, 10, (6, 4))
    stage_data.write_list(stage_data.list_path(1, "train", desc), [(f"i/{k}.png", t) for k, t in enumerate(targets)])
    write_annotations(tmp_path / "d/te.txt", [(f"{k}.png", rng.uniform(0, 24, (2, 2))) for k in range(3)])
    return desc, targets


def test_mean_pose_is_the_stage1_training_lists(two):
    desc, targets = two
    assert np.allclose(mean_pose(desc), targets.mean(axis=0).reshape(2, 2), atol=1e-6)
    pred = mean_pose_baseline(desc, ["i/0.png", "i/1.png", "i/2.png"])
    assert pred.shape == (3, 2, 2) and np.allclose(pred[2], mean_pose(desc) + np.array(desc.size) / 2)


def test_the_tool_prints_the_reports_numbers(two, capsys):
    desc, _ = two
    spec = importlib.util.spec_from_file_location("baseline_mean_pose", os.path.join(ROOT, "tools", "baseline_mean_pose.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--dataset", "two.py"])
    out = capsys.readouterr().out
    from deeppose.dataset import read_split
    from deeppose.dataset import image_path
    items = read_split(desc, "test")
    truth = np.stack([j for _, j in items])
    s = scores(mean_pose_baseline(desc, [image_path(n, desc) for n, _ in items]), truth, desc)
    assert f"Loss {s['loss']:.2f}  PCP {s['pcp']:.3f}" in out
    assert "PDJ " + "  ".join(f"{f}:{r:.3f}" for f, r in s["pdj"].items()) in out


def test_without_the_training_list_the_error_names_it(two):
    desc, _ = two
    os.remove(stage_data.list_path(1, "train", desc))
    with pytest.raises(ValueError, match=r"d/stage1/train.txt: no stage-1 training list"):
        mean_pose(desc)
