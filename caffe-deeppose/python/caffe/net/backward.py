"""A net's backward (Caffe's Net::BackwardFromTo) on the graph its last forward recorded: the
whole net in one autograd pass, or layer by layer over a range (with the backward hooks)."""
import torch

from ..blob import settle_diff


def backward_all(net):
    """The whole backward in one autograd pass: diffs flow from the loss tops (diff =
    loss_weight) and, with force_backward, from every output blob's diff."""
    roots, grads, root_names = [], [], set()
    for name in net._live:
        if name in net._loss_weights or (net.force_backward and name in net._output_names):
            t = net._live[name]
            if t.requires_grad:
                roots.append(t)
                grads.append(net.blobs[name].diff_tensor())
                root_names.add(name)
    if not roots:
        return
    for p in net._learnable:  # param diffs accumulate, also onto an update not yet copied
        settle_diff(p)
    net._diffs.clear()  # blob diffs are overwritten, not accumulated
    for name in net._grad_src:  # so the old ones go now: their memory serves the new (Caffe overwrites in place)
        if name not in root_names:
            net.blobs[name].set_diff(None)
    torch.autograd.backward(roots, grads, retain_graph=True)  # Caffe may run Backward twice
    for name, t in net._grad_src.items():
        if name not in root_names:
            g = net._diffs.get(name)
            net.blobs[name].set_diff(g if g is not None else torch.zeros_like(t))


def backward_layers(net, start, end):
    """Layer by layer from `start` down to `end`, as Caffe does: each layer back-propagates its
    tops' diffs on the last forward's graph (a range that forward did not compute is computed
    first). A top read by layers above it in the range gets their summed diffs (none: it is
    not under the loss); the range's own output tops use their stored diffs (for the whole
    net: the losses', and with force_backward every output's)."""
    wiring = net.module.wiring
    if not net._needs_backward:
        return
    for p in net._learnable:  # param diffs accumulate, also onto an update not yet copied
        settle_diff(p)
    # layers the executor computed by other means (the training chains): their own graphs, recomputed
    net._executor.replay(end, start, lambda i, bottoms, tops: net._records.__setitem__(i, (bottoms, tops)))
    if any(i not in net._records for i in range(end, start + 1) if not wiring[i].is_input):
        net._forward_range(end, start)
    whole = start == len(wiring) - 1
    read_above, pending = set(), {}
    for i in range(start, end - 1, -1):
        net._fire("before_backward", i)
        if i in net._records:
            bottoms, tops = net._records[i]
            grads = []
            for name in wiring[i].tops:
                if name in read_above:
                    grads.append(pending.pop(name, None))
                elif whole and not (net.force_backward or name in net._loss_weights):
                    grads.append(None)
                else:
                    grads.append(net.blobs[name].diff_tensor())
            outs = [(t, g) for t, g in zip(tops, grads) if t.requires_grad and g is not None]
            into = [(name, b) for name, b in zip(wiring[i].bottoms, bottoms) if b.requires_grad]
            params = [p for p in net.module.layers[i].blobs if p.requires_grad]
            if outs and (into or params):
                got = torch.autograd.grad([t for t, _ in outs], [b for _, b in into] + params,
                                          [g for _, g in outs], retain_graph=True, allow_unused=True)
                for (name, b), g in zip(into, got):
                    g = torch.zeros_like(b) if g is None else g
                    pending[name] = pending[name] + g if name in pending else g
                    net.blobs[name].set_diff(pending[name])
                with torch.no_grad():
                    for p, g in zip(params, got[len(into):]):
                        if g is not None:
                            p.grad = g.clone() if p.grad is None else p.grad.add_(g)
        read_above.difference_update(wiring[i].tops)
        read_above.update(wiring[i].bottoms)
        net._fire("after_backward", i)
