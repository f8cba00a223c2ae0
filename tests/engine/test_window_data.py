"""WindowData beyond the golden cases: the window file's parsing and errors, the crop geometry,
the refused fields, and the sampling statistics."""
import os

import numpy as np
import pytest

import caffe
from caffe.layer_modules.window_data import Window, WindowFileError, read_window_file, window_crop
from tests.conftest import GOLDEN, net_from

FILES = os.path.join(GOLDEN, "files")


def test_parse_splits_foreground_background_unused(tmp_path):
    (tmp_path / "w.txt").write_text("# 0\na.png\n3 20 24\n4\n2 0.9 3 2 14 12\n0 0.1 1 1 5 5\n"
                                    "1 0.4 0 0 5 5\n1 0.5 0 0 2 2\n# 1 b.png 3 8 8 0\n")
    images, fg, bg = read_window_file(str(tmp_path / "w.txt"), "root/", 0.5, 0.3)
    assert images == [("root/a.png", (3, 20, 24)), ("root/b.png", (3, 8, 8))]
    assert [(w.label, w.x1, w.y2) for w in fg] == [(2, 3, 12), (1, 0, 2)]  # overlap >= fg_threshold
    assert [(w.label, float(w.overlap), w.x2) for w in bg] == [(0, 0.0, 5)]  # 0.4 is neither


@pytest.mark.parametrize("text, message", [
    ("", "Window file is empty"),
    ("# 1\na.png 3 2 2 0\n", ":1: image index 1, expected 0"),
    ("# 0\na.png 3 2 2 1\n0 0.9 0 0 1 1\n", ":3: a foreground window .* needs a class index > 0"),
    ("# 0\na.png 3 2 2 1\n1 high 0 0 1 1\n", ":3: a window's overlap must be a number, got 'high'"),
    ("# 0\na.png 3 2 2 2\n1 0.9 0 0 1 1\n", "ends where a window's class index is expected"),
    ("% 0\n", ":1: expected '#'"),
])
def test_parse_errors_name_the_line(tmp_path, text, message):
    (tmp_path / "w.txt").write_text(text)
    with pytest.raises(WindowFileError, match=message):
        read_window_file(str(tmp_path / "w.txt"), "", 0.5, 0.5)


def test_crop_geometry():
    """Caffe's arithmetic: context scale crop / (crop - 2 pad), C rounding, clipping to the image
    with the padding scaled to the output, the mirrored padding on the other side."""
    w = Window(0, 1, 0.9, 3, 2, 14, 12)
    assert window_crop(w, 20, 24, 8, 0, False, False) == ((3, 2, 14, 12), (8, 8), (0, 0))
    # 12 x 11 window, pad 2 of 12: scale 1.5; centre (9, 7.5); square: half 6 -> x 0..18, y -2..17
    assert window_crop(w, 20, 24, 12, 2, True, False) == ((0, 0, 18, 17), (12, 11), (0, 1))
    # 14 x 14 at the right and bottom edges, pad 3 of 10: scale 2.5, centre (17, 13), half 17.5:
    # x -1..35 (round(-0.5) = -1, away from zero), y -5..31; 37 x 37 scaled by 10/37, clipped to
    # 24 x 20 -> 6 x 5; padding left 1 -> 0, right 12 -> 3, top 5 -> 1
    edge = Window(0, 0, 0, 10, 6, 23, 19)
    assert window_crop(edge, 20, 24, 10, 3, False, False) == ((0, 0, 23, 19), (6, 5), (0, 1))
    assert window_crop(edge, 20, 24, 10, 3, False, True) == ((0, 0, 23, 19), (6, 5), (3, 1))


def window_net(tmp_path, transform="crop_size: 8", extra="", batch=8, source=None):
    source = source or os.path.join(FILES, "windows.txt")
    text = (f'layer {{ name: "win" type: "WindowData" top: "data" top: "label" transform_param {{ {transform} }} '
            f'window_data_param {{ source: "{source}" batch_size: {batch} {extra} }} }}\n')
    return net_from(tmp_path, {}, text, force_backward=False)


@pytest.mark.parametrize("transform, extra, message", [
    ("crop_size: 8", "crop_size: 8", "window_data_param.crop_size is not supported"),
    ("crop_size: 8", "mirror: true", "window_data_param.mirror is not supported"),
    ("crop_size: 8 scale: 0.5", "", "transform_param.scale is not supported"),
    ("", "", "crop_size must be positive"),
    ("crop_size: 8", 'crop_mode: "fit"', "crop_mode 'fit'"),
    ("crop_size: 8", "context_pad: 4", "context_pad 4 leaves no room"),
    ("crop_size: 8 mean_value: 1 mean_value: 2", "", "1 mean_value or as many as channels: 3"),
])
def test_refused_settings(tmp_path, monkeypatch, transform, extra, message):
    monkeypatch.chdir(FILES)
    with pytest.raises(caffe.net.NetError, match=message):
        window_net(tmp_path, transform, extra)


def test_needs_both_kinds_of_window(tmp_path, monkeypatch):
    monkeypatch.chdir(FILES)
    (tmp_path / "w.txt").write_text("# 0\nimages/img0.png\n3 20 24\n1\n2 0.9 3 2 14 12\n")
    with pytest.raises(caffe.net.NetError, match="1 foreground and 0 background windows"):
        window_net(tmp_path, source=str(tmp_path / "w.txt"), extra="bg_threshold: 0.3")


def test_sampling_statistics(tmp_path, monkeypatch):
    """Each batch holds batch - int(batch * fg_fraction) background windows first, then foreground
    ones drawn uniformly: over many batches each foreground class appears about equally often."""
    monkeypatch.chdir(tmp_path)
    lines = ["# 0", os.path.join(FILES, "images", "img0.png"), "3 20 24", "4",
             "1 0.9 0 0 9 9", "2 0.8 5 5 15 15", "0 0.1 2 2 20 18", "0 0.2 1 1 3 3"]
    (tmp_path / "w.txt").write_text("\n".join(lines) + "\n")
    caffe.set_random_seed(3)
    net = window_net(tmp_path, transform="crop_size: 6 mirror: true", batch=10,
                     extra="fg_fraction: 0.3 bg_threshold: 0.5", source=str(tmp_path / "w.txt"))
    labels = np.array([net.forward()["label"].copy() for _ in range(60)])
    assert (labels[:, :7] == 0).all() and (labels[:, 7:] > 0).all()
    share = (labels[:, 7:] == 1).mean()
    assert 0.4 < share < 0.6  # 180 draws of p = 0.5: 0.5 +- 0.1 is over 2.5 standard deviations


def test_cache_images_gives_the_same_batch(tmp_path, monkeypatch):
    """cache_images keeps the encoded files in memory; the pixels are those of Caffe's batch."""
    monkeypatch.chdir(FILES)
    net = window_net(tmp_path, "crop_size: 8 mean_value: 100 mean_value: 110 mean_value: 120", batch=4,
                     extra="fg_threshold: 0.5 bg_threshold: 0.3 fg_fraction: 0.5 scale: 0.5 cache_images: true")
    np.testing.assert_allclose(net.forward()["data"], np.load("window_batches.npz")["window_warp_data"], rtol=1e-6)


def test_root_folder_prefixes_image_paths(tmp_path, monkeypatch):
    """root_folder is put before each image path of the window file (here: the golden files folder)."""
    monkeypatch.chdir(tmp_path)
    net = window_net(tmp_path, "crop_size: 8 mean_value: 100 mean_value: 110 mean_value: 120", batch=4,
                     source=os.path.join(FILES, "windows.txt"),
                     extra=f'fg_threshold: 0.5 bg_threshold: 0.3 fg_fraction: 0.5 scale: 0.5 root_folder: "{FILES}/"')
    want = np.load(os.path.join(FILES, "window_batches.npz"))["window_warp_data"]
    np.testing.assert_allclose(net.forward()["data"], want, rtol=1e-6)
