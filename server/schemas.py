"""Request and response bodies, with the examples shown at /docs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_codes"])
    message: str = Field(examples=["code ids must lie in [0, 4096), got [0, 5000]"])


class ErrorResponse(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail


class EncodeResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "wavtok-cpu-75hz-causal",
                    "sample_rate": 24000,
                    "frame_rate": 75.0,
                    "codebook_size": 4096,
                    "codebook_id": "ebf477b8588d093a",
                    "num_frames": 4,
                    "num_samples": 1200,
                    "codes": [17, 4051, 933, 12],
                }
            ]
        }
    )

    model: str
    sample_rate: int = Field(description="The model's rate; input was resampled to it.")
    frame_rate: float = Field(description="Token frames per second.")
    codebook_size: int
    codebook_id: str = Field(
        description="The codebook's fingerprint: codes decode correctly only with a model "
        "that has the same one."
    )
    num_frames: int
    num_samples: int = Field(description="Input length at `sample_rate`; pass it to decode.")
    codes: list[int] = Field(description="One token id per frame, in [0, codebook_size).")


class DecodeRequest(BaseModel):
    """JSON body of POST /v1/decode; the binary alternative is a `.wtok` token file."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"codes": [17, 4051, 933, 12], "num_samples": 1200}]},
    )

    codes: list[StrictInt] = Field(description="Token ids, one per frame (a flat list).")
    model: str | None = Field(None, description="Model name; default: the server's default.")
    num_samples: StrictInt | None = Field(
        None, description="Trim the output to this many samples (the encoder's `num_samples`)."
    )
    codebook_id: str | None = Field(
        None,
        description="The encoder's `codebook_id`; given, codes from another codebook are "
        "refused instead of decoding to the wrong sounds.",
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "wavtok-cpu-75hz-causal",
                    "sample_rate": 24000,
                    "frame_rate": 75.0,
                    "hop_length": 320,
                    "codebook_size": 4096,
                    "codebook_id": "ebf477b8588d093a",
                    "bitrate": 900.0,
                    "causal": True,
                    "default": True,
                }
            ]
        }
    )

    name: str
    sample_rate: int
    frame_rate: float
    hop_length: int
    codebook_size: int
    codebook_id: str = Field(
        description="The codebook's fingerprint: codes decode correctly only with a model "
        "that has the same one."
    )
    bitrate: float = Field(description="Bits per second of the token stream.")
    causal: bool = Field(description="Causal models support streaming.")
    default: bool


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyResponse(BaseModel):
    ready: bool
    models: list[str] = Field(default_factory=list)
    error: str | None = None


# -- Media types, and OpenAPI request bodies (the routes read raw bodies, so FastAPI cannot
# infer these). --
AUDIO_TYPES = ["audio/wav", "audio/x-wav", "audio/wave", "audio/flac", "audio/x-flac"]
AUDIO_TYPES += ["audio/ogg", "audio/mpeg", "audio/mp3"]
TOKEN_TYPE = "application/octet-stream"
OutputFormat = Literal["wav", "flac", "pcm16", "f32"]
MEDIA = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "pcm16": "application/octet-stream",
    "f32": "application/octet-stream",
}

ENCODE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in AUDIO_TYPES},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


DECODE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/DecodeRequest"},
                "example": {"codes": [17, 4051, 933, 12], "num_samples": 1200},
            },
            TOKEN_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
AUDIO_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA.values()}
