"""OpenCV and h5py, imported on their first use: 17 MB and 12 MB resident that `caffe train` of a
net without image, window or HDF5 layers, or snapshots in HDF5, never needs. `from .lazy_modules
import cv2` then `cv2.imread(...)` behaves as `import cv2` would."""
import importlib


class _OnFirstUse:
    """Stands for the module `name` and imports it when one of its attributes is first read (it
    is not put in sys.modules before: torch's custom-op registration reads every module there)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        module = importlib.import_module(self._name)
        self.__dict__.update(module.__dict__)  # later reads without this call
        return getattr(module, attr)

    def __repr__(self):
        return f"<module {self._name!r}, imported on first use>"


cv2 = _OnFirstUse("cv2")
h5py = _OnFirstUse("h5py")
