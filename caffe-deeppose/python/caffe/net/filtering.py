"""Which layers a net keeps (Caffe's Net::FilterNet): the NetState of a phase, level and stages,
and the include / exclude rules of each layer matched against it. Imports nothing of the net,
so that the data layers' helpers can apply the same rules."""
from ..proto import caffe_pb2


def net_state(param, phase, level, stages):
    """The state a NetParameter is filtered by: the file's stages plus `stages`, at `phase` and `level`."""
    state = caffe_pb2.NetState(phase=phase, level=level)
    state.stage.extend(param.state.stage)
    state.stage.extend(stages)
    return state


def meets_rule(rule, state):
    """Whether a NetStateRule holds in `state` (Caffe's StateMeetsRule)."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    return not any(s in state.stage for s in rule.not_stage)


def included(layer, state):
    """Whether a LayerParameter is in the net at `state`: one include rule met, or no exclude rule."""
    if layer.include:
        return any(meets_rule(r, state) for r in layer.include)
    return not any(meets_rule(r, state) for r in layer.exclude)
