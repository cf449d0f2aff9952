"""Growing a trained codec into a larger architecture (`wavtok train --init-from`).

A training model may be its source with ConvNeXt blocks appended to the decoder, wider
ConvNeXt hidden layers (`decoder.intermediate_dim`), a spectral
or pitch branch added to the encoder and/or a longer encoder or decoder lookahead. Every added
part starts as a no-op, so the grown model begins by computing exactly what the source does
and training only has to learn what the new part adds.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from codec.config import CodecConfig
from codec.model import Codec


class Growth(NamedTuple):
    """What a training model adds to its `--init-from` source; each part starts as a no-op."""

    decoder_blocks: int  # ConvNeXt blocks appended to the decoder
    spectral_branch: bool  # a spectral branch added to the encoder
    lookahead_frames: int  # future frames added to the decoder's lookahead
    encoder_lookahead_frames: int  # future frames added to the encoder's lookahead
    pitch_branch: bool  # a pitch branch added to the encoder
    hidden_units: int = 0  # units added to each decoder ConvNeXt block's hidden layer

    def describe(self) -> str:
        """For the log line: e.g. " (+2 decoder blocks, no-ops at start)"; "" if nothing grew."""
        parts = [f"+{self.decoder_blocks} decoder blocks"] if self.decoder_blocks else []
        parts += [f"+{self.hidden_units} hidden units per block"] if self.hidden_units else []
        parts += ["+spectral branch"] if self.spectral_branch else []
        parts += ["+pitch branch"] if self.pitch_branch else []
        if self.lookahead_frames:
            parts.append(f"+{self.lookahead_frames} decoder lookahead frames")
        if self.encoder_lookahead_frames:
            parts.append(f"+{self.encoder_lookahead_frames} encoder lookahead frames")
        return f" ({', '.join(parts)}, no-ops at start)" if parts else ""


def _growth(source: CodecConfig, target: CodecConfig) -> Growth | None:
    """How `target` grows `source`, or None if they differ otherwise.

    Attention positions must match, and they all lie within the source's blocks (CodecConfig
    checks), so added blocks come after the last attention block and the source's layers keep
    their positions (and their weights' names) in the grown decoder.
    """
    a, b = source.model_dump(exclude={"name"}), target.model_dump(exclude={"name"})
    a_layers, b_layers = a["decoder"].pop("num_layers"), b["decoder"].pop("num_layers")
    a_bins, b_bins = a["encoder"].pop("spectral_bins"), b["encoder"].pop("spectral_bins")
    a_ahead, b_ahead = a["decoder"].pop("lookahead"), b["decoder"].pop("lookahead")
    a_enc_ahead, b_enc_ahead = a["encoder"].pop("lookahead"), b["encoder"].pop("lookahead")
    a_pitch, b_pitch = a["encoder"].pop("pitch_branch"), b["encoder"].pop("pitch_branch")
    a_hidden, b_hidden = a["decoder"].pop("intermediate_dim"), b["decoder"].pop("intermediate_dim")
    # Noise phases add no weights (not a no-op, though: see DecoderConfig.noise_above_hz).
    a["decoder"].pop("noise_above_hz"), b["decoder"].pop("noise_above_hz")
    shrinks = (
        a_pitch > b_pitch
        or b_layers < a_layers
        or b_ahead < a_ahead
        or b_enc_ahead < a_enc_ahead
        or b_hidden < a_hidden
    )
    if a != b or shrinks or (a_bins and a_bins != b_bins):
        return None
    return Growth(
        b_layers - a_layers,
        b_bins > 0 and not a_bins,
        b_ahead - a_ahead,
        b_enc_ahead - a_enc_ahead,
        b_pitch and not a_pitch,
        b_hidden - a_hidden,
    )


def grow_from(codec: Codec, source: Codec) -> Growth | None:
    """Load `source`'s weights and codebook into `codec`, a grown copy of its architecture, with
    every added part a no-op; None (and nothing loaded) if `codec` is not such a copy."""
    growth = _growth(source.config, codec.config)
    if growth is None:
        return None
    # The configs match but for the grown parts, and `source` loaded its weights strictly,
    # so the only keys missing here are the added blocks', branch's and lookahead's.
    weights = source.state_dict()
    futures = {
        conv: weights.pop(f"{conv}.weight", None)
        for conv in ("decoder.embed_future", "encoder.future")
    }
    # Wider hidden layers: the source's units fill the first rows (columns) of each block's
    # linear layers; the added units keep their random input weights and get zero output
    # weights, so they add nothing until they train, and their gradients are not zero.
    hidden = (
        {
            key: weights.pop(key)
            for key in list(weights)
            if key.startswith("decoder.layers.") and ".pwconv" in key
        }
        if growth.hidden_units
        else {}
    )
    codec.load_state_dict(weights, strict=False)
    with torch.no_grad():
        for key, value in hidden.items():
            param = codec.get_parameter(key)
            if key.endswith("pwconv2.weight"):
                param.zero_()
                param[:, : value.shape[1]].copy_(value)
            else:
                param[: value.shape[0]].copy_(value)
        for conv, future in futures.items():
            if future is not None:
                # Tap k reads frame f + 1 + k: the source's taps keep their frames and the
                # added, farther ones keep the zeros the conv is built with.
                codec.get_submodule(conv).weight[..., : future.shape[-1]].copy_(future)
        for block in codec.decoder.layers[len(source.decoder.layers) :]:
            # A zero layer scale makes each added block the identity.
            block.gamma.zero_()
    # A new branch (spectral or pitch) or lookahead conv needs nothing more: each is built to
    # output zero.
    return growth
