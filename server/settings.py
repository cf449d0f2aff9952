"""Service settings: environment variables prefixed `WAVTOK_` (and a `.env` file) -> `Settings`.

List settings (`WAVTOK_API_KEYS`, `WAVTOK_CORS_ORIGINS`, `WAVTOK_MODELS`) take either a JSON
list or a comma-separated string, since comma lists are what people type into compose files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from codec.model import DEFAULT_MODEL
from codec.precision import DecodeDtype


class Settings(BaseSettings):
    """Everything the service can be told; see docs/api.md for the table."""

    model_config = SettingsConfigDict(
        env_prefix="WAVTOK_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    models_dir: Path | None = Field(
        None, description="Where model names are looked up; default: the codec's models/ dir."
    )
    default_model: str = Field(
        DEFAULT_MODEL, description="Model name or directory served when a request names none."
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra model names or directories to serve."
    )
    device: str = "cpu"
    dtype: DecodeDtype = Field(
        "float32",
        description="Autocast dtype for decoding (encoding is always float32, so tokens never "
        "depend on it): bfloat16 or float16 on CUDA, bfloat16 on a CPU with oneDNN bf16 kernels.",
    )
    max_body_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_audio_seconds: float = Field(600.0, gt=0)
    max_search_audio_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest audio per search-encoding request (?search=N). A search takes "
        "about twice the audio's duration on 2 CPU cores at N = 8, and longer at larger N.",
    )
    max_streams: int = Field(16, ge=0, description="Concurrent WebSocket streams.")
    stream_workers: int = Field(4, ge=1, description="Threads running streaming steps.")
    stream_idle_timeout_s: float = Field(30.0, gt=0)
    stream_chunk_frames: int = Field(
        15, ge=1, description="Frames decoded per chunk by POST /v1/decode?stream=true."
    )
    max_batch_size: int = Field(8, ge=1)
    max_wait_ms: float = Field(10.0, ge=0)
    max_queue: int = Field(64, ge=1, description="Requests waiting per model and operation.")
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    warmup: bool = True
    log_level: str = "info"

    @field_validator("models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not (value == "cpu" or value == "cuda" or value.startswith("cuda:") or value == "mps"):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {value!r}")
        return value
