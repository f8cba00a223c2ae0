"""The field audit's table: for every field of every `*_param` message of the schema, the evidence
that it acts as in Caffe (tests/engine/test_field_audit.py checks each entry and fails for a field without
one). Evidence:
  golden("layers/CASE" | "rules/CASE" | "files/CASE")  a golden case (computed by the real Caffe) whose
                                   prototxt sets the field; test_golden / test_legacy_fields run it
  test("test_file.py::test_name")  a test of ours in tests/engine that sets the field (the file must
                                   mention it)
  REFUSED                          setting it raises a clear "not supported" error
  no_effect("why")                 Caffe's results do not depend on it; checked on the first golden
                                   layer case of the type: set, the results stay Caffe's
  pending("Type")                  the layer type is not in the engine yet; once it is registered the
                                   entry fails until it is given real evidence
A new field (or a new `*_param` message) needs an entry here.
"""


def golden(case):
    return ("golden", case)


def test(ref):
    return ("test", ref)


def no_effect(why):
    return ("no_effect", why)


def pending(layer_type):
    return ("pending", layer_type)


REFUSED = ("refused",)

# the layer types that take a message (for the REFUSED and no_effect checks, which set the field in
# the type's first golden layer case, or in the case BASES names)
TYPES = {
    "ConvolutionParameter": ("Convolution", "Deconvolution"),
    "DataParameter": ("Data",),
    "ImageDataParameter": ("ImageData",),
    "LRNParameter": ("LRN",),
    "PoolingParameter": ("Pooling",),
    "ReLUParameter": ("ReLU",),
    "SigmoidParameter": ("Sigmoid",),
    "SoftmaxParameter": ("Softmax",),
    "TanHParameter": ("TanH",),
    "SPPParameter": ("SPP",),
    "RecurrentParameter": ("LSTM", "RNN"),
    "WindowDataParameter": ("WindowData",),
}
BASES = {"Data": "files/data_train", "ImageData": "rules/image_data", "WindowData": "files/window_warp"}

AUDIT = {
    "TransformationParameter": {
        "scale": golden("rules/image_data"),
        "mirror": test("test_data.py::test_mirror_is_seeded_and_crop_is_random_at_train_central_at_test"),
        "crop_size": golden("files/data_test_crop12"),
        "mean_file": golden("files/data_train"),
        "mean_value": golden("files/data_test_meanvalue"),
        "force_color": test("test_field_semantics.py::test_force_color_decodes_a_gray_image_to_bgr"),
        "force_gray": test("test_data.py::test_encoded_records_decode_and_force_gray"),
    },
    "LossParameter": {
        "ignore_label": golden("layers/sigmoid_ce_valid_ignore"),
        "normalization": golden("layers/euclidean"),
        "normalize": golden("layers/softmaxloss_normalize_false"),
    },
    "AccuracyParameter": {
        "top_k": golden("layers/accuracy_top3_test"),
        "axis": golden("layers/accuracy_axis2_test"),
        "ignore_label": golden("layers/accuracy_perclass_ignore_test"),
    },
    "ArgMaxParameter": {
        "out_max_val": golden("layers/argmax_axis1_top2_maxval"),
        "top_k": golden("layers/argmax_axis1_top2_maxval"),
        "axis": golden("layers/argmax_axis1"),
    },
    "BatchNormParameter": {
        "use_global_stats": golden("layers/batchnorm_test_factor0"),
        "moving_average_fraction": golden("layers/batchnorm_train"),
        "eps": golden("layers/batchnorm_test_factor0"),
    },
    "BiasParameter": {
        "axis": golden("layers/bias_1bottom"),
        "num_axes": golden("layers/bias_1bottom"),
        "filler": golden("rules/fillers"),
    },
    "ClipParameter": {
        "min": test("test_layers_extra.py::test_clip_values_and_gradient_mask_includes_the_bounds"),
        "max": test("test_layers_extra.py::test_clip_values_and_gradient_mask_includes_the_bounds"),
    },
    "ConcatParameter": {
        "axis": golden("layers/concat_axis1"),
        "concat_dim": golden("layers/concat_dim2"),
    },
    "ContrastiveLossParameter": {
        "margin": golden("layers/contrastive_margin2"),
        "legacy_version": golden("layers/contrastive_legacy"),
    },
    "ConvolutionParameter": {
        "num_output": golden("layers/conv_1x1"),
        "bias_term": golden("layers/conv_nobias"),
        "pad": golden("layers/conv_group2"),
        "kernel_size": golden("layers/conv_1x1"),
        "stride": golden("layers/conv_stride2_floor"),
        "dilation": golden("layers/conv_dilation2"),
        "pad_h": golden("layers/conv_rect_stride_pad"),
        "pad_w": golden("layers/conv_rect_stride_pad"),
        "kernel_h": golden("layers/conv_rect_stride_pad"),
        "kernel_w": golden("layers/conv_rect_stride_pad"),
        "stride_h": golden("layers/conv_rect_stride_pad"),
        "stride_w": golden("layers/conv_rect_stride_pad"),
        "group": golden("layers/conv_group2"),
        "weight_filler": golden("rules/fillers"),
        "bias_filler": golden("rules/fillers"),
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
        "axis": REFUSED,  # by Convolution and Deconvolution (TYPES); Im2col takes it: layers/im2col_axis2_1d
        "force_nd_im2col": no_effect("picks the N-d im2col implementation, same numbers"),
    },
    "CropParameter": {
        "axis": golden("layers/crop_axis1_one_offset"),
        "offset": golden("layers/crop_axis1_one_offset"),
    },
    "DataParameter": {
        "source": golden("files/data_train"),
        "batch_size": golden("files/data_train"),
        "rand_skip": test("test_field_semantics.py::test_data_rand_skip_starts_at_a_random_record_before_it"),
        "backend": test("test_data.py::test_backend_selects_the_database_kind"),  # and golden files/data_leveldb (unset: LevelDB)
        "scale": REFUSED,
        "mean_file": REFUSED,
        "crop_size": REFUSED,
        "mirror": REFUSED,
        "force_encoded_color": test("test_field_semantics.py::test_data_prefetch_and_force_encoded_color_change_nothing"),
        "prefetch": test("test_field_semantics.py::test_data_prefetch_and_force_encoded_color_change_nothing"),
        "label_num": golden("files/data_train"),
    },
    "DropoutParameter": {
        "dropout_ratio": golden("layers/dropout_test"),
    },
    "DummyDataParameter": {
        "data_filler": test("test_data.py::test_dummy_data_shapes_and_fillers"),
        "shape": test("test_data.py::test_dummy_data_shapes_and_fillers"),
        "num": test("test_data.py::test_dummy_data_shapes_and_fillers"),
        "channels": test("test_data.py::test_dummy_data_shapes_and_fillers"),
        "height": test("test_data.py::test_dummy_data_shapes_and_fillers"),
        "width": test("test_data.py::test_dummy_data_shapes_and_fillers"),
    },
    "EltwiseParameter": {
        "operation": golden("layers/eltwise_max"),
        "coeff": golden("layers/eltwise_sum_coeff"),
        "stable_prod_grad": golden("layers/eltwise_prod_unstable_grad"),
    },
    "ELUParameter": {
        "alpha": golden("layers/elu_alpha0.5"),
    },
    "EmbedParameter": {
        "num_output": golden("layers/embed_bias"),
        "input_dim": golden("layers/embed_bias"),
        "bias_term": golden("layers/embed_nobias"),
        "weight_filler": test("test_layers_extra.py::test_embed_rows_and_bias"),
        "bias_filler": test("test_layers_extra.py::test_embed_rows_and_bias"),
    },
    "ExpParameter": {
        "base": golden("layers/exp_base2_scale_shift"),
        "scale": golden("layers/exp_base2_scale_shift"),
        "shift": golden("layers/exp_base2_scale_shift"),
    },
    "FlattenParameter": {
        "axis": golden("layers/flatten_axis1_end2"),
        "end_axis": golden("layers/flatten_axis1_end2"),
    },
    "HDF5DataParameter": {
        "source": golden("files/hdf5_data"),
        "batch_size": golden("files/hdf5_data"),
        "shuffle": golden("files/hdf5_data_shuffle"),
    },
    "HDF5OutputParameter": {
        "file_name": golden("files/hdf5_output_0"),
    },
    "HingeLossParameter": {
        "norm": golden("layers/hinge_l2_4d"),
    },
    "ImageDataParameter": {
        "source": golden("rules/image_data"),
        "batch_size": golden("rules/image_data"),
        "rand_skip": test("test_field_semantics.py::test_image_data_shuffle_and_rand_skip"),
        "shuffle": test("test_field_semantics.py::test_image_data_shuffle_and_rand_skip"),
        "new_height": golden("rules/image_data"),
        "new_width": golden("rules/image_data"),
        "is_color": golden("rules/image_data"),
        "scale": REFUSED,
        "mean_file": REFUSED,
        "crop_size": REFUSED,
        "mirror": REFUSED,
        "root_folder": golden("rules/image_data"),
    },
    "InfogainLossParameter": {
        "source": golden("layers/infogain_source_ignore_prob"),
        "axis": golden("layers/infogain_axis_batchsize"),
    },
    "InnerProductParameter": {
        "num_output": golden("layers/ip_axis1"),
        "bias_term": golden("layers/ip_nobias"),
        "weight_filler": golden("rules/embedded_blobs"),
        "bias_filler": golden("rules/fillers"),
        "axis": golden("layers/ip_axis2"),
        "transpose": golden("layers/ip_transpose"),
    },
    "InputParameter": {
        "shape": golden("layers/absval"),
    },
    "LogParameter": {
        "base": golden("layers/log_base10_scale_shift"),
        "scale": golden("layers/log_base10_scale_shift"),
        "shift": golden("layers/log_base10_scale_shift"),
    },
    "LRNParameter": {
        "local_size": golden("layers/lrn_across3_alpha1"),
        "alpha": golden("layers/lrn_across3_alpha1"),
        "beta": golden("layers/lrn_across3_alpha1"),
        "norm_region": golden("layers/lrn_within3"),
        "k": golden("layers/lrn_across5_k2"),
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
    },
    "MemoryDataParameter": {
        "batch_size": test("test_data.py::test_memory_data_feeds_numpy_arrays"),
        "channels": test("test_data.py::test_memory_data_feeds_numpy_arrays"),
        "height": test("test_data.py::test_memory_data_feeds_numpy_arrays"),
        "width": test("test_data.py::test_memory_data_feeds_numpy_arrays"),
    },
    "MVNParameter": {
        "normalize_variance": golden("layers/mvn_mean_only"),
        "across_channels": golden("layers/mvn_across_channels_eps0.1"),
        "eps": golden("layers/mvn_across_channels_eps0.1"),
    },
    "ParameterParameter": {
        "shape": golden("layers/parameter"),
    },
    "PoolingParameter": {
        "pool": golden("layers/pool_ave_k3s2_ceil"),
        "pad": golden("layers/pool_ave_k3s2p1"),
        "pad_h": golden("layers/pool_ave_rect_hw"),
        "pad_w": golden("layers/pool_ave_rect_hw"),
        "kernel_size": golden("layers/pool_ave_k3s2_ceil"),
        "kernel_h": golden("layers/pool_ave_rect_hw"),
        "kernel_w": golden("layers/pool_ave_rect_hw"),
        "stride": golden("layers/pool_ave_k3s2_ceil"),
        "stride_h": golden("layers/pool_ave_rect_hw"),
        "stride_w": golden("layers/pool_ave_rect_hw"),
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
        "global_pooling": golden("layers/pool_global_ave"),
        "round_mode": test("test_field_semantics.py::test_pooling_round_mode"),
    },
    "PowerParameter": {
        "power": golden("layers/power_p2_s0.5_sh1"),
        "scale": golden("layers/power_p2_s0.5_sh1"),
        "shift": golden("layers/power_p2_s0.5_sh1"),
    },
    "PReLUParameter": {
        "filler": golden("rules/fillers"),
        "channel_shared": golden("layers/prelu"),
    },
    "PythonParameter": {
        "module": test("test_python_layer.py::test_import_errors"),
        "layer": test("test_python_layer.py::test_import_errors"),
        "param_str": test("test_python_layer.py::test_learnable_blobs_are_updated_saved_and_restored"),
        "share_in_parallel": test("test_python_layer.py::test_share_in_parallel_has_no_effect"),
    },
    "RecurrentParameter": {
        "num_output": golden("layers/lstm"),
        "weight_filler": test("test_layers_recurrent.py::test_blob_shapes_and_fillers"),
        "bias_filler": test("test_layers_recurrent.py::test_blob_shapes_and_fillers"),
        "debug_info": REFUSED,  # by LSTM and RNN (TYPES)
        "expose_hidden": golden("layers/lstm_static_expose"),
    },
    "ReductionParameter": {
        "operation": golden("layers/reduction_asum_coeff"),
        "axis": golden("layers/reduction_asum_coeff"),
        "coeff": golden("layers/reduction_asum_coeff"),
    },
    "ReLUParameter": {
        "negative_slope": golden("layers/relu_leaky0.1"),
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
    },
    "ReshapeParameter": {
        "shape": golden("layers/reshape_0_m1"),
        "axis": golden("layers/reshape_axis1_num1"),
        "num_axes": golden("layers/reshape_axis1_num1"),
    },
    "ScaleParameter": {
        "axis": golden("layers/scale_2bottom"),
        "num_axes": golden("layers/scale_axis1_n2"),
        "filler": golden("rules/fillers"),
        "bias_term": golden("layers/scale_bias"),
        "bias_filler": golden("rules/fillers"),
    },
    "SigmoidParameter": {
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
    },
    "SoftmaxParameter": {
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
        "axis": golden("layers/softmax_axis2"),
    },
    "SPPParameter": {
        "pyramid_height": golden("layers/spp_ave_h2_5x5"),
        "pool": golden("layers/spp_ave_h2_5x5"),
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
    },
    "SliceParameter": {
        "axis": golden("layers/slice_axis1"),
        "slice_point": golden("layers/slice_axis1"),
        "slice_dim": test("test_layers_basic.py::test_slice_equal_parts_and_legacy_dim"),
    },
    "SwishParameter": {
        "beta": golden("layers/swish_beta1.5"),
    },
    "TanHParameter": {
        "engine": no_effect("picks an implementation (CAFFE or CUDNN), not a result"),
    },
    "ThresholdParameter": {
        "threshold": golden("layers/threshold"),
    },
    "TileParameter": {
        "axis": golden("layers/tile_axis1"),
        "tiles": golden("layers/tile_axis1"),
    },
    "WindowDataParameter": {
        "source": golden("files/window_warp"),
        "scale": golden("files/window_warp"),
        "mean_file": REFUSED,  # Caffe's WindowData reads transform_param's, as for crop_size and mirror
        "batch_size": golden("files/window_warp"),
        "crop_size": REFUSED,
        "mirror": REFUSED,
        "fg_threshold": golden("files/window_warp"),
        "bg_threshold": golden("files/window_warp"),
        "fg_fraction": golden("files/window_warp"),
        "context_pad": golden("files/window_square_pad"),
        "crop_mode": golden("files/window_square_pad"),
        "cache_images": test("test_window_data.py::test_cache_images_gives_the_same_batch"),
        "root_folder": test("test_window_data.py::test_root_folder_prefixes_image_paths"),
    },
}
