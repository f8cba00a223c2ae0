"""The error of a net that cannot be built or loaded."""


class NetError(ValueError):
    """A net that cannot be built or loaded; the message names the file, layer and blob."""
