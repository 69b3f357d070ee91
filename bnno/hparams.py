"""The former name of :mod:`bnno.config` (hyperparameter sets, overrides, validation),
kept so that code and notebooks written against it still run; bnno's own code imports
:mod:`bnno.config`."""

from bnno.config import *  # noqa: F401,F403
from bnno.config import __all__  # noqa: F401
