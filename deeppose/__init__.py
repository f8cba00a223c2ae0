"""DeepPose: a cascade of CNN joint regressors, built on the `caffe` runtime of this project."""
