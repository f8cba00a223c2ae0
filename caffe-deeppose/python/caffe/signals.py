"""Caffe's SignalHandler: signals turned into solver actions ("stop", "snapshot", "none"), which a
solver asks for after each iteration and test batch (`solver.set_action_function(handler.requested)`).
Used by `caffe train` and by applications that train through pycaffe's solvers."""
import signal

from . import glog

EFFECTS = ("stop", "snapshot", "none")


class SignalHandler:
    """While entered: SIGINT and SIGHUP map to `sigint_effect` / `sighup_effect`; SIGTERM to "stop",
    noting `terminated` (the caller then snapshots). A second SIGINT before the first was acted on
    raises KeyboardInterrupt at once."""

    def __init__(self, sigint_effect="stop", sighup_effect="snapshot"):
        for name, effect in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if effect not in EFFECTS:
                raise ValueError(f'Invalid signal effect "{effect}" was specified for -{name} '
                                 f"({', '.join(EFFECTS)})")
        self._effects = {signal.SIGINT: sigint_effect, signal.SIGTERM: "stop"}
        if hasattr(signal, "SIGHUP"):
            self._effects[signal.SIGHUP] = sighup_effect
        self._pending, self._previous = [], {}
        self.terminated = False
        self.interrupted = False  # a SIGINT arrived

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in self._pending:
            raise KeyboardInterrupt
        if signum == signal.SIGTERM and not self.terminated:
            glog.info("caffe.cpp", "SIGTERM: stopping after this iteration, with a snapshot")
        self.terminated |= signum == signal.SIGTERM
        self.interrupted |= signum == signal.SIGINT
        if signum not in self._pending:
            self._pending.append(signum)

    def requested(self):
        """The action of the oldest signal not yet acted on ("none" if there is none)."""
        for signum in sorted(self._pending, key=lambda s: s not in (signal.SIGINT, signal.SIGTERM)):
            self._pending.remove(signum)
            return self._effects[signum]
        return "none"

    def __enter__(self):
        for signum in self._effects:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
