"""Wavtok: a WavTokenizer-style single-codebook neural audio codec."""

from codec.config import CodecConfig, named_configs
from codec.model import DEFAULT_MODEL, Codec

__all__ = ["DEFAULT_MODEL", "Codec", "CodecConfig", "named_configs"]
