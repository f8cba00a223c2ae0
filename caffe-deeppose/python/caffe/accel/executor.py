"""The accelerated executor of a net's forward (the interface is caffe.net.executor's): with
gradients, the training chains (caffe.accel.train_chains); without, the compiled forward
(caffe.accel.fastpath); with hooks, or where an acceleration is off, layer by layer."""
from . import active, fastpath, train_chains


class Accelerated:
    """Runs each forward on the fastest path that computes it."""

    def __init__(self, module):
        self.module = module
        self.compiled = fastpath.CompiledForward(module)
        self.replays = []  # of the training chains of the last forward (train_chains.run)

    def forward(self, env, start, end, grad, hooked, before, after):
        self.replays = []
        if grad and not hooked:
            self.replays = train_chains.run(self.module, env, start, end, after)
        elif grad or hooked or not active("compiled_forward"):
            self.module.run(env, start, end, before, after)
        else:
            self.compiled.run(env, start, end)

    def replay(self, start, end, after):
        """Recompute the chains of the last forward that overlap layers start..end, once."""
        if self.replays:
            train_chains.replay(self.module, self.replays, start, end, after)
            self.replays = []
