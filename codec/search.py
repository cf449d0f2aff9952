"""Analysis-by-synthesis encoding: each frame's token chosen by what the decoder makes of it.

`Codec.encode` picks the code nearest to the encoder's output in the lookup space, which the
decoder never hears. Here each frame tries its `candidates` nearest codes instead: every trial
continues the decoder's own streaming state (so it hears exactly what an offline decode of
those tokens gives), decodes the trial token plus `ahead` nearest-code tokens after it, and the
frame keeps the token whose decoded frames around it are closest to the input in a
loudness-compressed mel spectrum.
Frames are chosen in order, each against the tokens already chosen before it. With a `beam`
of W, each item keeps its W cheapest token sequences instead of one (a beam search): a
sequence's cost is the error of its final frames plus its newest trial's window, so a choice
that sounds worse now can still win later. W = 1 is the greedy search.
A first pass's trials hear `ahead` nearest codes after the tried one, not the tokens the search
will choose there. Each `refine` pass chooses every token again, its trials continuing with the
previous pass's tokens and scored over a wider span (`refine_span`), so each choice hears the
future it will really have.

The bitstream and the decoder are unchanged: search-encoded tokens decode with the same model
and token files as any others. The search costs about `candidates * (ahead + 1)` decoder frames
per frame, and each choice looks `ahead` frames into the input, so it is for offline encoding
(files, batch transcoding, the HTTP API), not for the streaming encoder. Causal models only:
the trials continue a streaming decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torchaudio

from codec.config import CodecConfig
from codec.decoder import DecoderStreamState

MEL_BANDS = 80
# Candidates are compared on mel power raised to this, a loudness-like compression (PESQ's
# loudness model uses ~0.23). Log-mel, used before, weighs errors in quiet bands and pauses as
# much as in speech; this scored higher on PESQ-wb and STOI on all 99 test clips.
MEL_COMPRESSION = 0.3
# Differences smaller than this share of the quieter of the two compressed values are not
# counted: PESQ's perceptual model masks them the same way (its dead zone is 0.25 of the
# smaller loudness), and a listener does not hear them either, so near-equal trials are
# ranked by the errors that are heard (docs/search.md, "The dead zone").
DEAD_ZONE = 0.25


class SearchStopped(Exception):
    """`search_encode` gave up because its `should_stop` said so (e.g. its client left)."""


@dataclass(frozen=True)
class SearchSettings:
    """How widely and how far each frame's choice looks."""

    candidates: int = 8  # nearest codes tried per frame; 1 gives `Codec.encode`'s tokens
    # Tokens after the tried one decoded with it (their nearest codes); 3 suits a decoder
    # lookahead of 2 (the shipped models), `settings_from` sets it for any model.
    ahead: int = 3
    # Output frames up to f + span - 1 are scored, from f - decoder lookahead. 2 scored as well
    # as 3 on the 99 test clips and decodes a fifth fewer trial frames (docs/search.md).
    span: int = 2
    # Token sequences kept per item (a beam search); 1 keeps only the best, a greedy search.
    beam: int = 1
    # Passes after the first, each choosing every token again with the previous pass's tokens
    # after it (module docstring); each costs about a greedy pass at `refine_span`.
    refine: int = 0
    # Output frames up to f + refine_span - 1 are scored in a refining pass: its later frames
    # are the tokens that will be kept, so a wider span than the first pass's is worth hearing.
    refine_span: int = 3

    def check(self, decoder_lookahead: int) -> None:
        if self.candidates < 1:
            raise ValueError(f"search candidates must be >= 1, got {self.candidates}")
        if self.beam < 1:
            raise ValueError(f"search beam must be >= 1, got {self.beam}")
        if self.refine < 0:
            raise ValueError(f"search refine passes must be >= 0, got {self.refine}")
        if self.span < 1 or self.refine_span < 1:
            raise ValueError(f"search spans must be >= 1, got {self.span}, {self.refine_span}")
        # Scored frames must be final once the trial has pushed its `ahead` tokens.
        if self.ahead < self.span - 1 + decoder_lookahead:
            raise ValueError(
                f"search ahead must be >= span - 1 + the decoder's lookahead "
                f"({self.span - 1 + decoder_lookahead}), got {self.ahead}"
            )


def settings_from(
    candidates: int, config: CodecConfig, beam: int = 1, refine: int = 0
) -> SearchSettings | None:
    """`--search N [--beam W] [--refine P]` -> checked settings for a model of `config`, or None
    for N = 0 (the nearest-code encoder)."""
    if not candidates:
        if beam != 1:
            raise ValueError("--beam needs --search (e.g. --search 8 --beam 4)")
        if refine:
            raise ValueError("--refine needs --search (e.g. --search 8 --refine 1)")
        return None
    if not config.causal:
        raise ValueError(f"--search needs a causal model; {config.name!r} is not")
    # The least lookahead that lets every scored frame be heard: more only costs time.
    ahead = SearchSettings.span - 1 + config.decoder.lookahead
    settings = SearchSettings(candidates, ahead=ahead, beam=beam, refine=refine)
    settings.check(config.decoder.lookahead)
    return settings


def encode_with(
    codec,
    wav: torch.Tensor,
    lengths: torch.Tensor | None,
    settings: SearchSettings | None,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`Codec.encode`, or `search_encode` when `settings` (from `settings_from`) is given."""
    if settings is None:
        return codec.encode(wav, lengths)
    return search_encode(codec, wav, lengths, settings, should_stop, progress)


class _CompressedMel(torch.nn.Module):
    """(N, T) samples -> (N, MEL_BANDS, T / hop - 1) mel power ** MEL_COMPRESSION, frames of two
    hops, no padding, so mel frame j covers token frames j and j + 1 of its input."""

    def __init__(self, sample_rate: int, hop: int) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=2 * hop, hop_length=hop, n_mels=MEL_BANDS, center=False
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mel(wav).clamp(min=0) ** MEL_COMPRESSION


def _distance(heard: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, MEL_BANDS, J) compressed mel of trials and of the input -> (N, J) their distance per
    mel frame: the mean over bands of the absolute difference less the dead zone (`DEAD_ZONE`
    times the smaller of the two), floored at 0."""
    masked = DEAD_ZONE * torch.minimum(heard, target)
    return ((heard - target).abs() - masked).clamp(min=0).mean(1)


@torch.inference_mode()
def search_encode(
    codec,
    wav: torch.Tensor,
    lengths: torch.Tensor | None = None,
    settings=SearchSettings(),
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, T) samples at the codec's rate -> ((B, F) int64 token ids, (B,) frame counts),
    as `Codec.encode` returns them, each id chosen by analysis-by-synthesis (module docstring).
    Ids past an item's frame count are 0. Each item's ids equal those of searching it alone, but
    for near-ties: where two trials' costs differ by no more than float rounding, which differs
    with the batch's size on some CPUs, a batch may keep the other one.

    A greedy search takes about 1.5 times the audio's duration on a CPU; `should_stop`, asked
    before each frame, lets a caller abandon it (`SearchStopped`), e.g. when nobody waits for
    the result, and `progress(frames_done, frames)` is told after each frame of every pass."""
    if not codec.causal:
        raise ValueError(f"model {codec.name!r} is not causal; search encoding needs a causal one")
    settings.check(codec.decoder.lookahead)
    inputs = codec.quantizer_inputs(wav, lengths)
    # (B, F, k): each frame's candidates, nearest first.
    top = codec.quantizer.nearest(inputs.latents, inputs.f0_channel, settings.candidates)
    n_frames = top.shape[1]
    passes = 1 + settings.refine
    refining = replace(
        settings,
        span=settings.refine_span,
        ahead=settings.refine_span - 1 + codec.decoder.lookahead,
        beam=1,
    )

    def pass_progress(done_before: int):
        if progress is None:
            return None
        return lambda done, _: progress(done_before + done, passes * n_frames)

    chosen = _search_pass(codec, inputs, top, settings, None, should_stop, pass_progress(0))
    for p in range(1, passes):
        chosen = _search_pass(
            codec, inputs, top, refining, chosen, should_stop, pass_progress(p * n_frames)
        )
    return chosen, inputs.code_lengths


def _search_pass(
    codec,
    inputs,
    top: torch.Tensor,
    settings: SearchSettings,
    following: torch.Tensor | None,
    should_stop: Callable[[], bool] | None,
    progress: Callable[[int, int], None] | None,
) -> torch.Tensor:
    """One pass over all frames -> (B, F) chosen ids. `top`: (B, F, k) candidate ids;
    `following`: (B, F) ids that trials decode after the tried token (a refining pass), or None
    for the nearest codes."""
    decoder = codec.decoder
    ahead, hop = settings.ahead, codec.hop_length
    frames = inputs.code_lengths
    batch, n_frames, k = top.shape
    past_end = torch.arange(n_frames + ahead + 1, device=top.device) >= frames[:, None]

    def latents(ids: torch.Tensor, rows_per_item: int) -> torch.Tensor:
        """(N, F) ids -> (N, D, F + ahead + 1) latents, and past an item's end the latents
        offline decoding sees there, so that trials end as a decode of that item ends."""
        out = torch.nn.functional.pad(codec.quantizer.decode(ids), (0, ahead + 1))
        end = past_end.repeat_interleave(rows_per_item, 0)[:, None]
        return torch.where(end, decoder.end_latents(out, out.shape[-1]), out)

    # Each item's candidates' latents, item-major rows (b * k + j).
    cand = latents(top.transpose(1, 2).reshape(batch * k, n_frames), k)
    # (B, D, F + ahead + 1): the latents trials decode after the tried token.
    after = cand[::k] if following is None else latents(following, 1)
    mel = _CompressedMel(codec.sample_rate, hop).to(cand.device)
    # Trials near the end decode past it: there the input is silence, as in `inputs.wav`.
    # Mel frames are hop-aligned, so the input's are computed once: frame j spans token frames
    # j and j + 1, whichever trial window it falls in.
    reference_mel = mel(torch.nn.functional.pad(inputs.wav, (0, (ahead + 1) * hop)))
    items = torch.arange(batch, device=cand.device)
    item_cands = items[:, None] * k + torch.arange(k, device=cand.device)  # rows of `cand`
    width, hyps = settings.beam, 1
    # Per hypothesis: the summed error of its final mel frames, and its newest final output
    # frame's audio (B * hyps, hop), which the next final mel frame spans.
    final_error = torch.zeros(batch, 1, dtype=torch.float64, device=cand.device)
    last_hop: torch.Tensor | None = None
    # Back-pointers: survivor s of frame f is candidate picks[b, f, s] after survivor
    # parents[b, f, s] of frame f - 1; survivor 0 is the cheapest.
    parents = torch.zeros(batch, n_frames, width, dtype=torch.long, device=cand.device)
    picks = torch.zeros_like(parents)
    state = DecoderStreamState()
    for f in range(n_frames):
        if should_stop is not None and should_stop():
            raise SearchStopped(f"search stopped at frame {f} of {n_frames}")
        rows = hyps * k  # trial rows per item, (hypothesis, candidate)-major
        trial = state.repeat_items(k)
        tokens = torch.cat(
            [
                cand[item_cands.repeat(1, hyps).reshape(-1), :, f : f + 1],
                after[..., f + 1 : f + 1 + ahead].repeat_interleave(rows, 0),
            ],
            -1,
        )
        audio = decoder.stream(tokens, trial)
        first = max(0, f - decoder.lookahead)  # the first frame this trial output
        last = min(f + settings.span, first + audio.shape[-1] // hop)
        window = torch.zeros(batch * rows, dtype=torch.float64, device=cand.device)
        if last - first >= 2:
            target = reference_mel[..., first : last - 1].repeat_interleave(rows, 0)
            error = _distance(mel(audio[:, : (last - first) * hop]), target)
            # Mel frame j spans token frames first + j and first + j + 1 of the item.
            spans = first + 1 + torch.arange(error.shape[-1], device=cand.device)
            scored = spans[None] < frames.repeat_interleave(rows, 0)[:, None]
            window = (error * scored).sum(-1).double()
        # Hypotheses differ by their final error; subtracting the least keeps a lone one's
        # ranking exactly its window's.
        spent = final_error - final_error.amin(-1, keepdim=True)
        cost = (spent[..., None] + window.reshape(batch, hyps, k)).reshape(batch, rows)
        kept = min(width, rows)
        order = torch.sort(cost, dim=-1, stable=True).indices[:, :kept]
        parent, pick = order // k, order % k
        parents[:, f, :kept], picks[:, f, :kept] = parent, pick
        parent_rows = (items[:, None] * hyps + parent).reshape(-1)
        if width > 1:
            state = state.select_items(parent_rows)
        final_error = final_error.gather(1, parent)
        new_audio = decoder.stream(
            cand[item_cands.gather(1, pick).reshape(-1), :, f : f + 1], state
        )
        if width > 1 and new_audio.shape[-1]:
            # Output frame f - lookahead is final now, and with it mel frame f - lookahead - 1.
            if last_hop is not None:
                j = f - decoder.lookahead - 1
                heard = mel(torch.cat([last_hop.index_select(0, parent_rows), new_audio], -1))
                error = _distance(heard, reference_mel[..., j : j + 1].repeat_interleave(kept, 0))
                scored = (j + 1 < frames).repeat_interleave(kept, 0)
                final_error = final_error + (error[:, 0] * scored).reshape(batch, kept)
            last_hop = new_audio
        hyps = kept
        if progress is not None:
            progress(f + 1, n_frames)
    chosen = torch.zeros(batch, n_frames, dtype=torch.long, device=cand.device)
    survivor = torch.zeros(batch, dtype=torch.long, device=cand.device)
    for f in reversed(range(n_frames)):
        # An item's answer is its cheapest survivor at its own last frame, as searched alone.
        active = f < frames
        pick = picks[items, f, survivor]
        chosen[:, f] = torch.where(active, top[items, f].gather(-1, pick[:, None])[:, 0], 0)
        survivor = torch.where(active, parents[items, f, survivor], survivor)
    return chosen
