"""What the bench scripts share (bench/bench_*.py and gpu_proof.py import it as `lib.<module>`;
the scripts are run as `python bench/<script>.py`, which puts bench/ on the path):

- timing: interleaved slices and fastest calls (plain Python + numpy, the real Caffe's worker
  imports it too);
- stage1_shape: the stage-1 input side and label count, read from the committed nets;
- stage1_nets: the stage-1 nets, weights and LMDB records the benches make;
- small_net: the small net and LMDB of the multi-process benches;
- deeppose_torch: the stage-1 net written directly in PyTorch and its training step;
- seed_caffe_worker: the real Caffe's side of bench_vs_caffe.py (run by its own python as
  `python -m lib.seed_caffe_worker` in bench/).
"""
