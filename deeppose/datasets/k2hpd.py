"""K2HPD (Kinect2 Human Pose Dataset): 15 joints on 256x212 depth images, text annotations
``<image name> x1,y1,x2,y2,...`` (some lines carry more numbers, or leading NUL bytes)."""

from ..dataset import DatasetDescription

DATASET = DatasetDescription(
    name="K2HPD",
    size=(256, 212),
    joint_names=(
        "head", "neck", "spine_mid",
        "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist",
        "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle",
    ),
    limbs=((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13), (13, 14)),
    torso_joints=(3, 12),
    flip_pairs=((3, 6), (4, 7), (5, 8), (9, 12), (10, 13), (11, 14)),
    alpha=0.8,
    root="data/K2HPD",
    image_dir="depth_data/depth_images",
    train_annotations="train_annos.txt",
    test_annotations="test_annos.txt",
    image_name_format="{:08d}.png",
)
