"""Audio codecs: bit-exact G.711 by lookup table, G.711 loss concealment and a streaming soxr resampler."""

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.plc import Concealer, ConcealmentMode
from voicelive_sip.codecs.resample import Resampler

__all__ = ["Concealer", "ConcealmentMode", "Resampler", "g711"]
