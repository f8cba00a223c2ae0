"""A net's learnable parameters (Caffe's AppendParam and ShareWeights): params shared by name
within a net, their lr_mult / decay_mult, which are learnt, and sharing with another net."""
from ..proto import caffe_pb2
from .errors import NetError


def share(module, lp, place, owners, owned):
    """Caffe's AppendParam: a named param seen before is shared (shape checked); the sharing
    layer's lr_mult/decay_mult apply where the owner leaves them unset, and must agree where
    both are set. `owners` maps names to (param, mults); a new param is appended to `owned`."""
    for i, p in enumerate(module.blobs):
        spec = lp.param[i] if i < len(lp.param) else caffe_pb2.ParamSpec()
        if spec.name and spec.name in owners:
            owner, mults = owners[spec.name]
            strict = spec.share_mode != caffe_pb2.ParamSpec.PERMISSIVE
            if (tuple(owner.shape) != tuple(p.shape)) if strict else (owner.numel() != p.numel()):
                raise NetError(f"{place}: shared param {spec.name!r} has shape {tuple(owner.shape)} in its "
                               f"owner but {tuple(p.shape)} here")
            module.blobs[i] = owner
            for field in ("lr_mult", "decay_mult"):
                if not spec.HasField(field):
                    continue
                if mults[field] is not None and mults[field] != getattr(spec, field):
                    raise NetError(f"{place}: Shared param {spec.name!r} has mismatched {field} "
                                   f"({getattr(spec, field):g} here, {mults[field]:g} before)")
                mults[field] = getattr(spec, field)
            continue
        mults = {f: getattr(spec, f) if spec.HasField(f) else None for f in ("lr_mult", "decay_mult")}
        if spec.name:
            owners[spec.name] = (p, mults)
        owned.append((p, mults))


def learnable(owned):
    """(params, their (lr_mult, decay_mult)) of the learnt ones of `owned`, in owner order; lr_mult 0 freezes."""
    params, specs = [], []
    for p, mults in owned:
        lr = 1.0 if mults["lr_mult"] is None else mults["lr_mult"]
        decay = 1.0 if mults["decay_mult"] is None else mults["decay_mult"]
        if p.requires_grad and lr == 0:
            p.requires_grad_(False)
        if p.requires_grad:
            params.append(p)
            specs.append((lr, decay))
    return params, specs


def share_with(net, other):
    """`net` uses `other`'s parameter tensors for the layers of the same name."""
    theirs = dict(zip(other._layer_names, other.module.layers))
    for name, layer in zip(net._layer_names, net.module.layers):
        src = theirs.get(name)
        if src is None or not len(layer.blobs):
            continue
        if len(src.blobs) != len(layer.blobs):
            raise NetError(f"cannot share layer {name!r}: {len(src.blobs)} params in the other net, "
                           f"{len(layer.blobs)} here")
        for i, p in enumerate(src.blobs):
            if tuple(p.shape) != tuple(layer.blobs[i].shape):
                raise NetError(f"cannot share layer {name!r} param {i}: shape {tuple(p.shape)} vs "
                               f"{tuple(layer.blobs[i].shape)}")
            mine = layer.blobs[i]
            net._learnable = [p if q is mine else q for q in net._learnable]
            layer.blobs[i] = p
