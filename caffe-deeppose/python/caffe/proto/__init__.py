"""The Caffe schema (`caffe.proto`) and its generated module `caffe_pb2`."""
