import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.audio import (
    AudioError,
    encode_audio_bytes,
    load_mono,
    read_audio,
    resample,
    to_mono,
    write_audio,
)


def tone(num_samples: int, sample_rate: int, channels: int = 1) -> np.ndarray:
    """(T, C) float32 sines at 440 Hz x channel index, amplitude 0.5."""
    t = np.arange(num_samples) / sample_rate
    cols = [0.5 * np.sin(2 * np.pi * 440.0 * (c + 1) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "subtype", "atol"),
    [("a.wav", "PCM_16", 1 / 32768), ("b.wav", "FLOAT", 0.0), ("c.flac", "PCM_16", 1 / 32768)],
)
def test_read_lossless(tmp_path: Path, name: str, subtype: str, atol: float):
    data = tone(1234, 16000)
    sf.write(tmp_path / name, data, 16000, subtype=subtype)
    wav, sr = read_audio(tmp_path / name)
    assert sr == 16000
    assert wav.shape == (1, 1234) and wav.dtype == torch.float32
    np.testing.assert_allclose(wav[0].numpy(), data[:, 0], atol=atol + 1e-7)


def test_read_ogg_vorbis(tmp_path: Path):
    data = tone(22050, 22050)
    sf.write(tmp_path / "a.ogg", data, 22050, format="OGG", subtype="VORBIS")
    wav, sr = read_audio(tmp_path / "a.ogg")
    assert sr == 22050 and wav.shape[0] == 1
    assert abs(wav.shape[1] - 22050) <= 64  # lossy codec; length is exact or near
    assert 0.3 < float(wav.abs().max()) < 0.7


def test_read_stereo_and_downmix(tmp_path: Path):
    data = tone(480, 48000, channels=2)
    sf.write(tmp_path / "s.wav", data, 48000, subtype="FLOAT")
    wav, sr = read_audio(tmp_path / "s.wav")
    assert wav.shape == (2, 480) and sr == 48000
    mono = to_mono(wav, sr, 48000)
    assert mono.shape == (480,)
    np.testing.assert_allclose(mono.numpy(), data.mean(axis=1), atol=1e-7)
    mono24, sr_in = load_mono(tmp_path / "s.wav", 24000)
    assert sr_in == 48000 and mono24.shape == (240,)


def test_read_bytes():
    wav = torch.from_numpy(tone(300, 24000)[:, 0])
    data = encode_audio_bytes(wav, 24000, "WAV")
    back, sr = read_audio(data)
    assert sr == 24000 and back.shape == (1, 300)
    torch.testing.assert_close(back[0], wav, atol=1 / 32768 + 1e-7, rtol=0)
    pcm = encode_audio_bytes(wav, 24000, "PCM16")
    assert len(pcm) == 600


@pytest.mark.parametrize(
    ("num", "rate", "target"),
    [(16000, 16000, 24000), (44100, 44100, 24000), (441, 44100, 24000), (1001, 22050, 24000)],
)
def test_to_mono_length(num: int, rate: int, target: int):
    for channels in (1, 2):
        wav = torch.from_numpy(tone(num, rate, channels).T.copy())
        out = to_mono(wav, rate, target)
        assert out.dim() == 1
        assert out.shape[0] == math.ceil(num * target / rate)


def test_to_mono_identity_and_1d():
    wav = torch.randn(100)
    assert torch.equal(to_mono(wav, 24000, 24000), wav)
    with pytest.raises(AudioError, match="shape"):
        to_mono(torch.zeros(1, 2, 3), 24000, 24000)
    with pytest.raises(AudioError, match="sample rate"):
        to_mono(wav, 0, 24000)


@pytest.mark.parametrize("rate", [23999, 44099, 7919])
def test_to_mono_odd_rates_are_cheap_and_close(rate: int):
    # An exact polyphase ratio such as 24000/23999 would need gigabytes of kernel.
    wav = torch.from_numpy(tone(rate, rate)[:, 0].copy())
    out = to_mono(wav, rate, 24000)
    assert abs(out.shape[0] - 24000) <= 24000 * 1e-4


def band_share_db(wav: torch.Tensor, rate: int, low_hz: float, high_hz: float) -> float:
    """Energy of (T,) `wav` between the two frequencies, in dB of its total energy."""
    power = torch.fft.rfft(wav.double()).abs() ** 2
    freqs = torch.fft.rfftfreq(wav.shape[-1], 1 / rate)
    band = power[(freqs >= low_hz) & (freqs < high_hz)].sum()
    return float(10 * torch.log10(band / power.sum()))


def test_resample_leaves_no_images_or_aliases():
    # White noise fills the whole band up to Nyquist, the worst case for a resampling filter.
    # With torchaudio's default filter the images of 8 kHz audio at 4.1-6 kHz are ~-21 dB of
    # the total, which PESQ-wb heard as bandwidth Codec2 does not have.
    noise = torch.randn(8000 * 4, generator=torch.Generator().manual_seed(0))
    up = resample(noise, 8000, 16000)
    assert up.shape[0] == 2 * noise.shape[0]
    assert band_share_db(up, 16000, 4100, 6000) < -50
    assert band_share_db(up, 16000, 200, 3500) > -1  # the passband is kept
    wide = torch.randn(24000 * 4, generator=torch.Generator().manual_seed(1))
    down = resample(wide, 24000, 8000)
    # What lies above 4 kHz at 24 kHz must be removed, not folded back below 4 kHz, so the
    # band just under the new Nyquist is given up: the default filter leaves -22 dB there.
    assert band_share_db(down, 8000, 3950, 4000) < -30
    assert band_share_db(down, 8000, 200, 3500) > -1


def test_to_mono_rejects_absurd_rates():
    for rate in (-1, 0, 999, 10_000_000):
        with pytest.raises(AudioError, match="sample rate"):
            to_mono(torch.zeros(100), rate, 24000)


def test_unreadable_bytes_message_has_no_object_repr():
    message = one_line_error(read_audio, b"definitely not audio")
    assert message.startswith("<bytes>: unreadable audio") and "0x" not in message


def one_line_error(func, *args) -> str:
    with pytest.raises(AudioError) as err:
        func(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path):
    path = tmp_path / "nope.wav"
    assert one_line_error(read_audio, path) == f"{path}: no such file"


def test_unreadable_file(tmp_path: Path):
    path = tmp_path / "text.wav"
    path.write_text("this is not audio\nat all\n")
    message = one_line_error(read_audio, path)
    assert message.startswith(f"{path}: unreadable audio")
    assert "unreadable audio" in one_line_error(read_audio, b"garbage bytes")


def test_empty_file(tmp_path: Path):
    sf.write(tmp_path / "e.wav", np.zeros((0, 1), np.float32), 24000)
    assert "no samples" in one_line_error(read_audio, tmp_path / "e.wav")


def test_non_finite_samples(tmp_path: Path):
    data = tone(100, 24000)
    data[5] = np.nan
    sf.write(tmp_path / "n.wav", data, 24000, subtype="FLOAT")
    assert "NaN" in one_line_error(read_audio, tmp_path / "n.wav")


def test_write_audio_round_trip(tmp_path: Path):
    wav = torch.linspace(-1.5, 1.5, 1000)  # out-of-range samples are clipped
    write_audio(tmp_path / "w.wav", wav, 24000)
    back, sr = read_audio(tmp_path / "w.wav")
    assert sr == 24000 and back.shape == (1, 1000)
    assert float(back.max()) <= 1.0 and float(back.min()) >= -1.0
    torch.testing.assert_close(back[0], wav.clamp(-1, 1), atol=1e-4, rtol=0)


def test_directory_is_not_audio(tmp_path: Path):
    assert "is a directory" in one_line_error(read_audio, tmp_path)
