from pathlib import Path

import pytest
from pydantic import ValidationError

from codec.config import CodecConfig, named_configs


def test_named_configs_listed_and_load():
    names = named_configs()
    for expected in ("wavtok-tiny", "wavtok-tiny-causal", "wavtok-24k-75hz", "wavtok-24k-40hz"):
        assert expected in names
    for name in names:
        cfg = CodecConfig.named(name)
        assert cfg.name == name
        assert cfg.sample_rate == 24000


def test_unknown_named_config_lists_known():
    with pytest.raises(ValueError, match="unknown config 'nope'.*wavtok-tiny"):
        CodecConfig.named("nope")


@pytest.mark.parametrize(
    ("name", "hop", "rate", "bps"),
    [
        ("wavtok-24k-75hz", 320, 75.0, 900.0),
        ("wavtok-small-75hz-causal", 320, 75.0, 900.0),
        ("wavtok-24k-40hz", 600, 40.0, 480.0),
    ],
)
def test_rate_arithmetic(name: str, hop: int, rate: float, bps: float):
    cfg = CodecConfig.named(name)
    assert cfg.hop_length == hop
    assert cfg.frame_rate == rate
    assert cfg.bits_per_code == 12
    assert cfg.bitrate == bps


@pytest.mark.parametrize(("size", "bits"), [(2, 1), (3, 2), (1024, 10), (4096, 12), (4097, 13)])
def test_bits_per_code(size: int, bits: int):
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data["quantizer"]["codebook_size"] = size
    assert CodecConfig.model_validate(data).bits_per_code == bits


def test_yaml_round_trip(tmp_path: Path):
    data = CodecConfig.named("wavtok-tiny-causal").model_dump()
    data["name"] = "changed"
    data["encoder"]["ratios"] = [8, 5, 5, 3]
    data["decoder"]["attention_after"] = [0, 1]
    cfg = CodecConfig.model_validate(data)
    cfg.to_yaml(tmp_path / "c.yaml")
    again = CodecConfig.from_yaml(tmp_path / "c.yaml")
    assert again == cfg
    assert again.hop_length == 600


@pytest.mark.parametrize("where", ["top", "encoder", "quantizer", "decoder"])
def test_unknown_keys_rejected(where: str):
    data = CodecConfig.named("wavtok-tiny").model_dump()
    (data if where == "top" else data[where])["bogus_key"] = 1
    with pytest.raises(ValidationError, match="bogus_key"):
        CodecConfig.model_validate(data)


def test_unknown_key_in_yaml_rejected(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nencoder: {ratio: [2, 2]}\n")
    with pytest.raises(ValueError, match="ratio"):
        CodecConfig.from_yaml(path)


def test_non_mapping_yaml_rejected(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        CodecConfig.from_yaml(path)


@pytest.mark.parametrize("indices", [[2], [-1], [0, 5]])
def test_bad_attention_indices_rejected(indices: list[int]):
    data = CodecConfig.named("wavtok-tiny").model_dump()  # num_layers == 2
    data["decoder"]["attention_after"] = indices
    with pytest.raises(ValidationError, match="attention_after"):
        CodecConfig.model_validate(data)


def test_other_invariants_rejected():
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data["quantizer"]["codebook_size"] = 1
    with pytest.raises(ValidationError, match="codebook_size"):
        CodecConfig.model_validate(data)
    data = CodecConfig.named("wavtok-tiny").model_dump()
    data["decoder"]["attention_heads"] = 3
    with pytest.raises(ValidationError, match="divisible"):
        CodecConfig.model_validate(data)


def test_extends_overrides_nested_keys(tmp_path: Path):
    (tmp_path / "base.yaml").write_text(CodecConfig.named("wavtok-tiny").model_dump_json())
    (tmp_path / "wide.yaml").write_text(
        "extends: base.yaml\nname: wide\ndecoder: {dim: 64, intermediate_dim: 128}\n"
    )
    base, wide = CodecConfig.named("wavtok-tiny"), CodecConfig.from_yaml(tmp_path / "wide.yaml")
    assert (wide.name, wide.decoder.dim, wide.decoder.intermediate_dim) == ("wide", 64, 128)
    assert wide.decoder.num_layers == base.decoder.num_layers
    assert wide.encoder == base.encoder


def test_extends_missing_parent_is_an_error(tmp_path: Path):
    (tmp_path / "child.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        CodecConfig.from_yaml(tmp_path / "child.yaml")
