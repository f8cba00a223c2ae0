"""Caffe's file formats: prototxt text and binary protos (protoio, prototext: the text Caffe
writes), .caffemodel weights (caffemodel), HDF5 files (hdf5), LMDB / LevelDB databases of Datums
(db), image list files (image_list), and legacy files upgraded on load (upgrade)."""
