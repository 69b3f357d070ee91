"""Compatibility with "A Bop and Beyond"'s notation of schedules (Suarez-Ramirez et
al., 2021, arXiv:2104.05124): a factor in ``<name>_decay`` with the period
``epochs_decay``, written in bnno's own keys."""

import math
from typing import Any, Dict

from bnno.config.keys import DECAY_KEYS, DECAYS, as_float, is_whole
from bnno.errors import UsageError

#: "A Bop and Beyond"'s period, in epochs, of the schedules it gives as factors.
EPOCHS_DECAY_KEY = "epochs_decay"


def factor_decays(hparams: Dict[str, Any], where: str) -> Dict[str, Any]:
    """``hparams`` with every schedule given as a factor written in bnno's keys.

    bnno names a schedule's kind in ``<name>_decay`` with a word (``none``, ``linear``,
    ``step``, ``piecewise``). "A Bop and Beyond" (Suarez-Ramirez et al., 2021,
    arXiv:2104.05124) gives the same key a number, the factor of a staircase decay whose
    period is its ``epochs_decay``, shared by every schedule: its command lines write
    ``epochs_decay=100,threshold_decay=0.1,gamma_decay=0.1,sigma_decay=0.1``. A word is
    never a number, so both read unambiguously: a finite number in ``<name>_decay`` (or
    its text, from ``--hparams``) becomes ``<name>_decay=step``, ``<name>_decay_factor``
    = the number and ``<name>_decay_epochs`` = ``epochs_decay``; anything else is left
    for :func:`validate`. A factor without ``epochs_decay`` is a ``UsageError`` that
    shows both ways to write it. The result is what a run records.
    """
    result = dict(hparams)
    period = result.get(EPOCHS_DECAY_KEY)
    for key in DECAY_KEYS:
        value = result.get(key)
        factor = None if value is None or value in DECAYS else as_float(value)
        if factor is None or not math.isfinite(factor):
            continue
        if period is None:
            raise UsageError(
                f"{key}={value} in {where} is a factor, which needs {EPOCHS_DECAY_KEY}=N (times "
                f"{value} every N epochs, as in 'A Bop and Beyond'); or write "
                f"{key}=step,{key}_factor={value},{key}_epochs=N."
            )
        if not is_whole(period):
            continue  # validate() says what epochs_decay must be
        result.update({key: "step", f"{key}_factor": factor, f"{key}_epochs": period})
    return result
