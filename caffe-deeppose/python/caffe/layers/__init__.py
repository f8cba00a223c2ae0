"""Layer families; importing this package registers every built-in layer type."""
from .base import Layer  # noqa: F401
from . import input, inner_product, loss  # noqa: F401
