"""The former name of ``maskgen.build``, kept for one release: importing it warns, naming the new one."""

import warnings

from maskgen.build import *  # noqa: F403
from maskgen.build import __all__  # noqa: F401

warnings.warn("maskgen.builder is deprecated, use maskgen.build", DeprecationWarning, stacklevel=2)
