"""One configuration source: environment (`MEDLENS_*`), a TOML file, and CLI flags.

Precedence, highest first: explicit keyword arguments (CLI flags) > environment >
config file (`MEDLENS_CONFIG`, else `<data_dir>/config.toml`) > defaults. The field
descriptions double as `--help` text and as the documentation in README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("~/.medlens")
MIN_TOKEN_CHARS = 32  # MEDLENS_API_TOKENS entries shorter than this are refused


class DicomNode(BaseModel):
    """A remote DICOM application MedLens may talk to (a PACS, a modality, a router)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Short name used on the command line.")
    ae_title: str = Field(min_length=1, max_length=16, description="Its AE title.")
    host: str = Field("127.0.0.1", description="Its host name or address.")
    port: int = Field(104, ge=1, le=65535, description="Its DICOM port.")


class AutoInterpretRules(BaseModel):
    """Which arriving studies are queued for interpretation without anyone asking."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Queue arriving studies that match.")
    modalities: list[str] = Field(default_factory=lambda: ["CR", "DX"])
    body_parts: list[str] = Field(default_factory=lambda: ["CHEST"])
    quiet_seconds: float = Field(
        10.0, ge=0, description="A study counts as complete after this long without news."
    )


def config_file_path() -> Path | None:
    """Where the TOML config file is looked for (it need not exist)."""
    explicit = os.environ.get("MEDLENS_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    data_dir = Path(os.environ.get("MEDLENS_DATA_DIR", str(DEFAULT_DATA_DIR))).expanduser()
    return data_dir / "config.toml"


class Settings(BaseSettings):
    """MedLens settings. Env vars are the field names upper-cased with `MEDLENS_`."""

    model_config = SettingsConfigDict(env_prefix="MEDLENS_", extra="ignore", validate_default=True)

    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Folder for the store, images, caches and test models."
    )
    generator: str = Field(
        "google/medgemma-4b-it", description="Registry id or PATH of the report generator."
    )
    text_generator: str | None = Field(
        None, description="Model for text-only tasks (summaries, QA); defaults to generator."
    )
    encoder: str = Field(
        "google/medsiglip-448", description="Registry id or PATH of the image/text encoder."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where models run.")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="Weights dtype (never float16 for Gemma 3)."
    )
    max_new_tokens: int = Field(300, ge=1, le=8192, description="Report length cap in tokens.")
    language: str = Field("en", description="Default output language (ISO 639-1).")
    demo: bool = Field(False, description="Run the built-in test models (output is meaningless).")

    # server
    host: str = Field("127.0.0.1", description="Bind address (loopback unless auth is set).")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    api_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Bearer tokens accepted by the API (comma list)."
    )
    database_url: str | None = Field(
        None, description="sqlite:///path or postgresql://...; default: <data_dir>/medlens.db."
    )
    max_upload_mb: int = Field(50, ge=1, description="Largest accepted request body.")
    max_image_pixels: int = Field(
        50_000_000, ge=1, description="Decompression-bomb cap (pixels per image)."
    )
    workers: int = Field(1, ge=1, le=64, description="Concurrent model jobs per process.")
    inference_queue_depth: int = Field(
        16, ge=0, description="Chat requests that may wait for the model; more get 429 at once."
    )
    rate_limit_per_minute: int = Field(
        60, ge=1, description="Requests per caller (user, token, else address) per minute."
    )
    open_api_docs: bool = Field(
        False, description="Serve /docs and /openapi.json without sign-in when auth is on."
    )

    # single sign-on (OpenID Connect); off while oidc_issuer is unset
    oidc_issuer: str | None = Field(
        None, description="OpenID provider's issuer URL; turns single sign-on (and auth) on."
    )
    oidc_client_id: str | None = Field(None, description="This server's client id there.")
    oidc_client_secret: SecretStr | None = Field(
        None, description="Its client secret (unset: a public client, PKCE only)."
    )
    oidc_provider_name: str = Field("SSO", description="Shown as 'Sign in with <name>'.")
    oidc_scopes: str = Field("openid profile email", description="Scopes to request.")
    oidc_role_claim: str = Field("medlens_role", description="ID token claim with the role.")
    oidc_groups_claim: str = Field("groups", description="ID token claim with the groups.")
    oidc_default_role: Literal["clinician", "radiologist", "admin"] | None = Field(
        None, description="Role when the claim is absent (unset: such a login is refused)."
    )
    oidc_redirect_base: str | None = Field(
        None, description="Public base URL for the callback (default: the request's)."
    )

    # de-identification
    site_secret: SecretStr | None = Field(
        None, description="Secret for deterministic UID remapping (default: generated once)."
    )
    deid_dates: Literal["remove", "shift"] = Field("shift", description="Date handling.")
    deid_burned_in: Literal["warn", "block"] = Field(
        "warn", description="Policy when BurnedInAnnotation is YES or absent."
    )
    deid_retain_safe_private: bool = Field(False, description="Keep safe private tags.")
    deid_age_band: bool = Field(
        False, description="Keep a 5-year age band as PatientAge (the birth date is emptied)."
    )

    # models from elsewhere
    hf_token: SecretStr | None = Field(None, description="Hugging Face token for `pull`.")
    remote_api_key: SecretStr | None = Field(
        None, description="API key for openai: sources (never logged)."
    )
    probes: dict[str, Path] = Field(
        default_factory=dict, description="Trained probes by name (e.g. urgent=path)."
    )
    models: list[dict[str, Any]] = Field(
        default_factory=list, description="Extra registry entries ([[models]] in the file)."
    )

    # hospital integration (medlens.integrations); everything off or loopback by default:
    # a destination that is not configured is never contacted
    dicom_nodes: list[DicomNode] = Field(
        default_factory=list, description="Remote DICOM nodes ([[dicom_nodes]] or JSON list)."
    )
    local_ae_title: str = Field(
        "MEDLENS", min_length=1, max_length=16, description="MedLens's own AE title."
    )
    dicom_listen_host: str = Field("127.0.0.1", description="Address `medlens listen` binds.")
    dicom_listen_port: int = Field(11112, ge=1, le=65535, description="Its DICOM port.")
    dicomweb_url: str | None = Field(
        None, description="DICOMweb base URL of the PACS (e.g. http://127.0.0.1:8042/dicom-web)."
    )
    dicomweb_token: SecretStr | None = Field(None, description="Bearer token for DICOMweb.")
    dicomweb_user: str | None = Field(None, description="Basic-auth user for DICOMweb.")
    dicomweb_password: SecretStr | None = Field(None, description="Basic-auth password.")
    fhir_url: str | None = Field(None, description="FHIR R4 base URL results are sent to.")
    fhir_token: SecretStr | None = Field(None, description="Bearer token for the FHIR server.")
    auto_interpret: AutoInterpretRules = Field(
        default_factory=AutoInterpretRules, description="Rules for interpreting what arrives."
    )
    result_delivery: Literal["stow", "cstore", "none"] = Field(
        "none", description="How results go back to the PACS (none: they are not sent)."
    )
    result_node: str | None = Field(
        None, description="dicom_nodes name results are C-STOREd to (default: the first)."
    )
    sr_kind: Literal["basic", "comprehensive"] = Field(
        "basic", description="Narrative SR as Basic Text SR or Comprehensive SR."
    )
    result_overlay: Literal["none", "gsps"] = Field(
        "none", description="Also send a GSPS (AI draft text and box) with the SRs."
    )
    # `medlens listen`'s second trigger: Orthanc's /changes feed (off while unset)
    orthanc_url: str | None = Field(
        None, description="Orthanc REST base URL whose /changes are polled (same auth as DICOMweb)."
    )
    orthanc_poll_seconds: float = Field(
        30.0, gt=0, description="Seconds between /changes polls (a hook wakes it sooner)."
    )
    hook_token: SecretStr | None = Field(
        None, description="Bearer token Orthanc's Lua hook sends to POST /v1/hooks/orthanc."
    )

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        # MEDLENS_API_TOKENS="a,b" is friendlier than JSON in an env var.
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("api_tokens")
    @classmethod
    def _long_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        # A short token can be guessed over the network; refuse it before serving.
        short = [i + 1 for i, t in enumerate(value) if len(t.get_secret_value()) < MIN_TOKEN_CHARS]
        if short:
            raise ValueError(
                f"API token(s) number {short} are shorter than {MIN_TOKEN_CHARS} characters; "
                "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
                "or use per-user tokens (`medlens users token NAME`)"
            )
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError("MEDLENS_OIDC_ISSUER is set: MEDLENS_OIDC_CLIENT_ID is needed too")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = config_file_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None and path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # --- derived paths (not settings: computed so they follow data_dir) ------
    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def test_models_dir(self) -> Path:
        return self.data_path / "test-models"

    @property
    def images_dir(self) -> Path:
        return self.data_path / "images"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'medlens.db'}"

    @property
    def text_model(self) -> str:
        return self.text_generator or self.generator


DEMO_SUBDIR = "demo"  # demo mode's own folder under the default data dir


def for_demo(settings: Settings) -> Settings:
    """Demo mode keeps its studies apart: without a data dir chosen by flag, env or
    config file, it uses `<default data dir>/demo` so the real History never shows them."""
    if not settings.demo or "data_dir" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"data_dir": DEFAULT_DATA_DIR / DEMO_SUBDIR})


def load_settings(**overrides: Any) -> Settings:
    """Settings from env + file, with CLI overrides (None values are ignored)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        # One actionable line (env var / config key and what is accepted), no traceback.
        from medlens.errors import ConfigError

        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])} = {_shown(err)}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid setting (MEDLENS_* env or config file): {problems}") from None


_SECRET_FIELDS = {
    "api_tokens",
    "site_secret",
    "hf_token",
    "remote_api_key",
    "session_secret",
    "oidc_client_secret",
    "dicomweb_token",
    "dicomweb_password",
    "fhir_token",
    "hook_token",
}


def _shown(err: Any) -> str:
    # An error message must not echo a secret into a terminal or a log.
    return "<hidden>" if err["loc"] and err["loc"][0] in _SECRET_FIELDS else repr(err.get("input"))
