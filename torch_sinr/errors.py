"""One family of errors, so callers can catch everything torch_sinr raises on bad input.

All derive from ``ValueError`` (as peft's do): bad input is a bad value, not a crash.
"""


class SINRError(ValueError):
    """Base class of every error torch_sinr raises for bad input."""


class SINRConfigError(SINRError):
    """A configuration or target selection that cannot be carried out."""


class SINRInputError(SINRError):
    """A tensor that cannot be coded: wrong shape, NaN/Inf, wrong dtype."""


class SINRFormatError(SINRError):
    """A compressed file that is truncated, corrupt, hostile or of an unknown version."""


class SINRAlreadyCompressedError(SINRConfigError):
    """The model (or file) is already SINR-compressed: there is nothing left to code."""
