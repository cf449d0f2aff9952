"""scripts/transport_weights.py: halved weights for the trip back from the device machine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "transport_weights.py"


def _module():
    spec = importlib.util.spec_from_file_location("transport_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_halves_and_unpack_restores_within_fp16_precision(tmp_path: Path) -> None:
    tw = _module()
    gen = torch.Generator().manual_seed(0)
    weights = {
        "conv.weight": torch.randn(64, 32, 7, generator=gen) * 0.05,
        "layer_scale": torch.full((256,), 1e-6),  # far below fp16's normal range unscaled
        "big": torch.randn(1000, generator=gen) * 1e6,  # above fp16's largest value unscaled
        "steps": torch.arange(10),
        "scalar": torch.tensor(3.5),
    }
    src, packed, back = tmp_path / "a.safetensors", tmp_path / "p", tmp_path / "b.safetensors"
    save_file(weights, src)
    tw.pack(str(src), str(packed))
    tw.unpack(str(packed), str(back))
    restored = load_file(back)
    assert restored.keys() == weights.keys()
    assert packed.stat().st_size < 0.6 * src.stat().st_size
    for name, value in weights.items():
        assert restored[name].dtype == value.dtype
        if value.is_floating_point():
            tolerance = value.abs().max() * 2.0**-11
            assert (restored[name] - value).abs().max() <= tolerance, name
        else:
            assert torch.equal(restored[name], value)
