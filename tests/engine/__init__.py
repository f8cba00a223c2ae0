"""Tests of the engine: the Caffe-compatible runtime (caffe-deeppose/python/caffe)."""
