"""Audio codecs: the `Codec` vocabulary, bit-exact G.711 by lookup table, loss concealment, a soxr resampler.

`Codec` is imported eagerly (it is numpy-free); the numpy/soxr modules load on first use, so the SIP core can
use the vocabulary without pulling in numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from voicelive_sip.codecs.names import Codec

if TYPE_CHECKING:
    from voicelive_sip.codecs import g711
    from voicelive_sip.codecs.plc import Concealer, ConcealmentMode
    from voicelive_sip.codecs.resample import Resampler

_LAZY = {
    "g711": ("voicelive_sip.codecs.g711", None),
    "Concealer": ("voicelive_sip.codecs.plc", "Concealer"),
    "ConcealmentMode": ("voicelive_sip.codecs.plc", "ConcealmentMode"),
    "Resampler": ("voicelive_sip.codecs.resample", "Resampler"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = ["Codec", "Concealer", "ConcealmentMode", "Resampler", "g711"]
