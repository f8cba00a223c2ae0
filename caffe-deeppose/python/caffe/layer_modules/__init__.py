"""Layer families, one module each; importing this package registers every built-in layer type."""
import importlib
import pkgutil

from .base import LayerModule  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
