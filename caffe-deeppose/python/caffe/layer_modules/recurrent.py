"""Recurrent layers: LSTMUnit, LSTM and RNN with Caffe's semantics.

Caffe builds an unrolled net of T time steps; here the time loop runs in PyTorch with the same
numbers, blobs and gradients:
- bottoms x (T, N, ...), cont (T, N) (0 starts a new sequence: the previous hidden state is
  dropped), an optional static input x_static (N, ...) and, with `expose_hidden`, the initial
  states (h_0 for RNN; h_0, c_0 for LSTM, each (1, N, num_output)); tops the outputs (T, N,
  num_output) and, with `expose_hidden`, the final states.
- blobs in the order of Caffe's unrolled net: LSTM W_xc (4H, D), b_c (4H), [W_xc_static (4H, S)],
  W_hc (4H, H); RNN W_xh (H, D), b_h (H), [W_xh_static (H, S)], W_hh (H, H), W_ho (H, H), b_o (H).
- without `expose_hidden` the final state of one forward is the initial state of the next (zero
  at first), as Caffe's layer keeps it; cont = 0 at the first step of a batch drops it.
- as in Caffe, no gradient flows into cont, into the exposed initial states, nor from the exposed
  final-state tops (the unrolled net shares only their data).
"""
import math

import torch
import torch.nn.functional as F

from .. import fillers
from ..registry import register_layer
from .base import LayerModule


class _LSTMUnitFunction(torch.autograd.Function):
    """Caffe's LSTMUnit on (1, N, D) c_prev, (1, N, 4D) gate inputs [i f o g], (1, N, 1) cont.

    The backward is Caffe's: the forget gate is f = cont * sigmoid(f') (0 where cont == 0) and its
    gradient uses f * (1 - f), which differs from the exact one when cont is neither 0 nor 1.
    """

    @staticmethod
    def forward(ctx, c_prev, gates, cont):
        i, f, o, g = gates.chunk(4, dim=-1)
        i, o, g = torch.sigmoid(i), torch.sigmoid(o), torch.tanh(g)
        f = torch.where(cont == 0, torch.zeros_like(f), cont * torch.sigmoid(f))
        c = f * c_prev + i * g
        tanh_c = torch.tanh(c)
        ctx.save_for_backward(c_prev, i, f, o, g, tanh_c)
        return c, o * tanh_c

    @staticmethod
    def backward(ctx, c_diff, h_diff):
        c_prev, i, f, o, g, tanh_c = ctx.saved_tensors
        c_term = c_diff + h_diff * o * (1 - tanh_c * tanh_c)
        gates_diff = torch.cat([c_term * g * i * (1 - i), c_term * c_prev * f * (1 - f),
                                h_diff * tanh_c * o * (1 - o), c_term * i * (1 - g * g)], dim=-1)
        return c_term * f, gates_diff, None


def lstm_unit(c_prev, gates, cont):
    """(c_t, h_t) of Caffe's LSTMUnit; cont broadcasts over the last axis."""
    return _LSTMUnitFunction.apply(c_prev, gates, cont)


@register_layer("LSTMUnit")
class LSTMUnit(LayerModule):
    """Caffe's LSTMUnit: bottoms c_{t-1} (1, N, D), gate inputs (1, N, 4D), cont (1, N); tops
    c_t and h_t (1, N, D). No gradient to cont."""

    num_bottoms = 3
    num_tops = 2
    no_grad_bottoms = (2,)

    def top_shapes(self, bottom_shapes):
        c, gates, cont = (tuple(s) for s in bottom_shapes)
        if len(c) != 3 or len(gates) != 3 or len(cont) != 2:
            raise ValueError(f"LSTMUnit takes bottoms of 3, 3 and 2 axes (c_prev (1, N, D), gate inputs "
                             f"(1, N, 4D), cont (1, N)), got {c}, {gates}, {cont}")
        if c[0] != 1 or gates[0] != 1 or cont[0] != 1 or not c[1] == gates[1] == cont[1]:
            raise ValueError(f"LSTMUnit bottoms must be one time step of the same N streams, got {c}, {gates}, {cont}")
        if gates[2] != 4 * c[2]:
            raise ValueError(f"LSTMUnit gate inputs need 4 x {c[2]} = {4 * c[2]} channels, got {gates[2]}")
        return [c, c]

    def forward(self, c_prev, gates, cont):
        return lstm_unit(c_prev, gates, cont.unsqueeze(-1))


class _Recurrent(LayerModule):
    """What LSTM and RNN share: bottoms, fillers, state carried between forwards, top shapes.

    Subclasses give `state_names` (the recurrent states, in Caffe's bottom/top order),
    `gate_multiple` (rows of the input weights per output) and `step`.
    """

    min_bottoms = 2
    min_tops = 1
    no_grad_bottoms = (1,)  # cont: Caffe's AllowForceBackward refuses it and it never gets a diff
    state_names = ()
    gate_multiple = 1

    def __init__(self, param, phase):
        super().__init__(param, phase)
        p = param.recurrent_param
        if p.num_output <= 0:
            raise ValueError("recurrent_param.num_output must be positive")
        if p.debug_info:
            raise ValueError("recurrent_param.debug_info (logging the unrolled net) is not supported")
        self.num_output = int(p.num_output)
        self.expose_hidden = p.expose_hidden
        exposed = len(self.state_names) if self.expose_hidden else 0
        if len(param.bottom) not in (2 + exposed, 3 + exposed):
            names = "x, cont, optionally x_static" + "".join(f", {n}" for n in self.state_names[:exposed])
            raise ValueError(f"takes {names}: {2 + exposed} or {3 + exposed} bottoms, the prototxt gives "
                             f"{len(param.bottom)}")
        if len(param.top) != 1 + exposed:
            raise ValueError(f"takes {1 + exposed} top(s) (the outputs"
                             f"{' and the final ' + ', '.join(self.state_names) if exposed else ''}), "
                             f"the prototxt gives {len(param.top)}")
        self.static_input = len(param.bottom) == 3 + exposed
        self._weight_filler, self._bias_filler = p.weight_filler, p.bias_filler
        self._state = None  # the last forward's final states, when not exposed

    def _check(self, bottom_shapes):
        x, cont = tuple(bottom_shapes[0]), tuple(bottom_shapes[1])
        if len(x) < 2:
            raise ValueError(f"bottom x must have at least 2 axes (#timesteps, #streams, ...), got {x}")
        if cont != x[:2]:
            raise ValueError(f"bottom cont must be (#timesteps, #streams) = {x[:2]}, got {cont}")
        if self.static_input:
            s = tuple(bottom_shapes[2])
            if len(s) < 1 or s[0] != x[1]:
                raise ValueError(f"bottom x_static must be (#streams, ...) with #streams = {x[1]}, got {s}")
        state_shape = (1, x[1], self.num_output)
        for name, shape in zip(self.state_names, bottom_shapes[2 + self.static_input:]):
            if tuple(shape) != state_shape:
                raise ValueError(f"bottom {name} must be {state_shape}, got {tuple(shape)}")
        return x, state_shape

    def _weight(self, rows, cols):
        self.add_blob(fillers.fill(self._weight_filler, (rows, cols)))

    def setup(self, bottom_shapes):
        x, _ = self._check(bottom_shapes)
        self.timesteps = x[0]
        rows = self.gate_multiple * self.num_output
        self._weight(rows, math.prod(x[2:]))
        self.add_blob(fillers.fill(self._bias_filler, (rows,)))
        if self.static_input:
            self._weight(rows, math.prod(bottom_shapes[2][1:]))
        self._weight(rows, self.num_output)

    def top_shapes(self, bottom_shapes):
        x, state_shape = self._check(bottom_shapes)
        if x[0] != self.timesteps:
            raise ValueError(f"input number of timesteps changed: {x[0]}, the layer was set up for {self.timesteps}")
        return [x[:2] + (self.num_output,)] + [state_shape] * (len(self.state_names) if self.expose_hidden else 0)

    def _initial_states(self, x, given):
        if self.expose_hidden:
            return [s.detach() for s in given]
        shape = (1, x.shape[1], self.num_output)
        state = self._state
        if state is None or state[0].shape != shape or state[0].device != x.device:
            return [x.new_zeros(shape) for _ in self.state_names]
        return list(state)

    def forward(self, x, cont, *rest):
        static = rest[0] if self.static_input else None
        w_x, b_x = self.blobs[0], self.blobs[1]
        w_static = self.blobs[2] if self.static_input else None
        w_h = self.blobs[3 if self.static_input else 2]
        x_in = F.linear(x.flatten(2), w_x, b_x)  # (T, N, rows)
        if static is not None:
            x_in = x_in + F.linear(static.flatten(1), w_static).unsqueeze(0)
        states = self._initial_states(x, rest[1:] if self.static_input else rest)
        outputs = []
        for t in range(x.shape[0]):
            cont_t = cont[t].reshape(1, -1, 1)
            states, out = self.step(x_in[t:t + 1], F.linear(states[0] * cont_t, w_h), cont_t, states)
            outputs.append(out)
        if not self.expose_hidden:
            self._state = tuple(s.detach() for s in states)
            return (torch.cat(outputs, 0),)
        return (torch.cat(outputs, 0),) + tuple(s.detach() for s in states)

    def extra_repr(self):
        return (f"name={self.name!r}, num_output={self.num_output}, static_input={self.static_input}, "
                f"expose_hidden={self.expose_hidden}")


@register_layer("LSTM")
class LSTM(_Recurrent):
    """Caffe's LSTM: gates = W_hc (cont_t h_{t-1}) + W_xc x_t + b_c [+ W_xc_static x_static];
    (c_t, h_t) = LSTMUnit(c_{t-1}, gates, cont_t); the top is h (T, N, num_output)."""

    state_names = ("h_0", "c_0")
    gate_multiple = 4

    def step(self, x_in, h_in, cont_t, states):
        c, h = lstm_unit(states[1], h_in + x_in, cont_t)
        return (h, c), h


@register_layer("RNN")
class RNN(_Recurrent):
    """Caffe's RNN: h_t = tanh(W_hh (cont_t h_{t-1}) + W_xh x_t + b_h [+ W_xh_static x_static]);
    the top is o_t = tanh(W_ho h_t + b_o), (T, N, num_output)."""

    state_names = ("h_0",)

    def setup(self, bottom_shapes):
        super().setup(bottom_shapes)
        self._weight(self.num_output, self.num_output)
        self.add_blob(fillers.fill(self._bias_filler, (self.num_output,)))

    def step(self, x_in, h_in, cont_t, states):
        h = torch.tanh(h_in + x_in)
        w_o, b_o = self.blobs[-2], self.blobs[-1]
        return (h,), torch.tanh(F.linear(h, w_o, b_o))
