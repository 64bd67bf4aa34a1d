"""Run configuration: named pipelines from pipelines.yaml, validated once into frozen dataclasses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..models.decoding import DECODINGS, DEFAULT_INSTRUCTION, NUCLEUS
from .errors import ConfigError
from .policy import POLICIES
from .reasons import DROP_REASONS

# Each score's range: an ITM match probability, a cosine similarity.
SCORE_RANGES = {"itm": (0.0, 1.0), "similarity": (-1.0, 1.0)}
PACKAGED_CONFIG = Path(__file__).resolve().parent / "pipelines.yaml"


@dataclass(frozen=True)
class CaptionerConfig:
    """The captioner: a BLIP captioner or any vision-language model ``AutoModelForImageTextToText`` loads
    (``models.families``), and how it decodes. ``prompt`` is the plain text the model continues when its processor
    has no chat template (BLIP, BLIP-2, PaliGemma, Florence-2); ``instruction`` the user's words after the image
    when it has one (LLaVA, Qwen2-VL, ...). ``decoding``: ``nucleus`` (BLIP's, ``num_captions`` samples at
    ``top_p``), ``greedy`` (one caption) or ``beam`` (``num_captions`` beams). Lengths count generated tokens,
    prompt excluded. ``caption_below``: when set, the filter scores each web caption first and only images whose
    web caption scores under it (or that have none) are captioned; None (the default) captions every image."""

    model: str = "Salesforce/blip-image-captioning-base"
    prompt: str = "a picture of "
    instruction: str = DEFAULT_INSTRUCTION
    decoding: str = NUCLEUS
    num_captions: int = 3
    top_p: float = 0.9
    min_length: int = 5
    max_length: int = 20
    batch_size: int = 8
    caption_below: float | None = None

    def check(self) -> list[tuple[str, str]]:
        skip = _range("caption_below", self.caption_below, -1.0, 1.0) if self.caption_below is not None else []
        return [
            *skip,
            *_choice("decoding", self.decoding, DECODINGS),
            *_range("num_captions", self.num_captions, 0, 64),
            *_range("top_p", self.top_p, 1e-6, 1.0),
            *_range("min_length", self.min_length, 0, self.max_length),
            *_range("max_length", self.max_length, 1, 512),
            *_range("batch_size", self.batch_size, 1, 4096),
        ]


@dataclass(frozen=True)
class FilterConfig:
    """The filter and the selection policy. ``model`` is BLIP ITM or a dual encoder (SigLIP, SigLIP 2, CLIP,
    MetaCLIP 2: ``models.families``). ``score`` names the score the policy and threshold use: the filter's match
    probability (``itm``, in [0, 1]: BLIP's ITM head, SigLIP's sigmoid; a CLIP filter has none) or the
    contrastive cosine (``similarity``, in [-1, 1])."""

    model: str = "Salesforce/blip-itm-base-coco"
    threshold: float = 0.5
    policy: str = "best"
    score: str = "itm"
    web_margin: float = 0.0
    batch_size: int = 24
    max_text_tokens: int | None = None

    def check(self) -> list[tuple[str, str]]:
        if self.score not in SCORE_RANGES:
            return [("score", f"must be one of {', '.join(SCORE_RANGES)}, not {self.score!r}")]
        low, high = SCORE_RANGES[self.score]
        problems = [
            *_range("threshold", self.threshold, low, high),
            *_range("web_margin", self.web_margin, 0.0, high - low),
            *_range("batch_size", self.batch_size, 1, 65536),
        ]
        problems += _choice("policy", self.policy, POLICIES)
        return problems


@dataclass(frozen=True)
class SimilarityConfig:
    """Contrastive similarity of every candidate: ``itc`` (the filter's own contrastive head, sharing its vision
    pass: BLIP's ITC head, or a dual-encoder filter's own cosine), a dual encoder checkpoint (SigLIP, SigLIP 2,
    CLIP, MetaCLIP 2; hub id, directory or ``embedded:clip``) or a BLIP ITM one (its ITC head), or ``none``.
    ``embeddings`` writes clip-retrieval's ``img_emb/``, ``text_emb/``, ``metadata/`` for the kept samples."""

    model: str = "none"
    embeddings: bool = False
    batch_size: int = 64
    max_text_tokens: int | None = None

    def check(self) -> list[tuple[str, str]]:
        problems = _range("batch_size", self.batch_size, 1, 65536)
        if self.embeddings and not self.enabled:
            problems.append(("embeddings", "needs similarity.model (itc or a dual encoder checkpoint), not none"))
        return problems

    @property
    def enabled(self) -> bool:
        return self.model != "none"


@dataclass(frozen=True)
class DecodeConfig:
    """Limits on what is read and decoded; anything over them is dropped with a reason."""

    max_pixels: int = 89_478_485  # Pillow's own decompression-bomb threshold
    max_member_bytes: int = 64 << 20
    draft_size: int = 512  # JPEGs are decoded at a reduced scale no smaller than this; 0 decodes in full

    def check(self) -> list[tuple[str, str]]:
        return [
            *_range("draft_size", self.draft_size, 0, 1 << 16),
            *_range("max_pixels", self.max_pixels, 1, 10**10),
            *_range("max_member_bytes", self.max_member_bytes, 1, 1 << 34),
        ]


CAPTION_FRAMES = ("middle", "spread", "all")
FRAME_CHOICES = ("uniform", "shots", "longest_shot")
LEGACY_FRAME_CHOICE = "uniform"  # how every clip was sampled before frame_choice existed


@dataclass(frozen=True)
class VideoConfig:
    """How video samples are sampled into frames, and the limits past which a video is dropped with a reason.

    ``frames`` frames are sampled (BLIP's video retrieval takes 8); with ``fps`` that many per second instead, never
    more than ``frames`` (CLIP4Clip's scheme). ``frame_choice`` says where: ``uniform`` over the whole clip,
    ``longest_shot`` uniformly over its longest shot (the default: the same frames as ``uniform`` when the clip is
    one shot, and ahead of it by the README's measurements on clips that cut), ``shots`` over every shot in
    proportion (``video.shot_frames``); ``caption_frames`` says which of them the captioner writes from (README,
    "Video samples").
    """

    frames: int = 8
    fps: float | None = None
    frame_choice: str = "longest_shot"
    caption_frames: str = "spread"
    max_seconds: float = 600.0
    max_pixels: int = 8_847_360  # 4096x2160, DCI 4K: the largest common video frame
    max_member_bytes: int = 1 << 30
    decode_seconds: float = 60.0  # wall-clock limit on reading one video, so a hostile file cannot stall a shard

    def check(self) -> list[tuple[str, str]]:
        problems = [
            *_range("frames", self.frames, 1, 256),
            *_range("max_seconds", self.max_seconds, 1e-3, 10**7),
            *_range("max_pixels", self.max_pixels, 1, 10**10),
            *_range("max_member_bytes", self.max_member_bytes, 1, 1 << 40),
            *_range("decode_seconds", self.decode_seconds, 1e-6, 86_400),
        ]
        if self.fps is not None:
            problems += _range("fps", self.fps, 1e-3, 1000)
        if self.frame_choice not in FRAME_CHOICES:
            problems.append(("frame_choice", f"must be one of {', '.join(FRAME_CHOICES)}, not {self.frame_choice!r}"))
        if self.caption_frames not in CAPTION_FRAMES:
            problems.append(
                ("caption_frames", f"must be one of {', '.join(CAPTION_FRAMES)}, not {self.caption_frames!r}")
            )
        return problems


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how the models run in each worker."""

    device: str = "auto"
    dtype: str = "auto"  # bfloat16 where the device has it natively, else float32 (models.loading.resolve_dtype)
    threads: int = 0  # torch threads per worker process; 0: the cores divided among worker processes
    prefetch_batches: int = 2  # batches read and decoded ahead of the models by a background thread
    # threads decoding and making pixels for those batches; 0: every core where a GPU runs the models, else 1
    decode_threads: int = 0
    trust_remote_code: bool = False

    def check(self) -> list[tuple[str, str]]:
        problems = [
            *_range("threads", self.threads, 0, 1024),
            *_range("prefetch_batches", self.prefetch_batches, 0, 64),
            *_range("decode_threads", self.decode_threads, 0, 1024),
        ]
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            problems.append(("device", f"must be auto, cpu or cuda[:N], not {self.device!r}"))
        if self.dtype not in ("float32", "bfloat16", "float16", "auto"):
            problems.append(("dtype", f"must be float32, bfloat16, float16 or auto, not {self.dtype!r}"))
        return problems


@dataclass(frozen=True)
class GatesConfig:
    """CI curation gates checked after a run (``capfilt check`` takes the same ones as flags); None: not gated.

    ``max_dropped_fraction`` maps a drop reason (``reasons.DROP_REASONS``) to the largest share of the input it
    may drop. ``min_accuracy`` needs ground truth, so it holds only for demo-world output.
    """

    min_kept_fraction: float | None = None
    max_failed_shards: int | None = None
    max_dropped_fraction: dict[str, float] = field(default_factory=dict)
    min_accuracy: float | None = None

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.min_kept_fraction is not None:
            problems += _range("min_kept_fraction", self.min_kept_fraction, 0.0, 1.0)
        if self.max_failed_shards is not None:
            problems += _range("max_failed_shards", self.max_failed_shards, 0, 10**9)
        if self.min_accuracy is not None:
            problems += _range("min_accuracy", self.min_accuracy, 0.0, 1.0)
        for reason, limit in self.max_dropped_fraction.items():
            key = f"max_dropped_fraction.{reason}"
            if reason not in DROP_REASONS:
                problems.append((key, f"not a drop reason (valid: {', '.join(DROP_REASONS)})"))
            elif isinstance(limit, bool) or not isinstance(limit, (int, float)):
                problems.append((key, f"expected a fraction, got {limit!r}"))
            else:
                problems += _range(key, limit, 0.0, 1.0)
        return problems

    def active(self) -> bool:
        return any(v not in (None, {}) for v in dataclasses.asdict(self).values())


@dataclass(frozen=True)
class DemoDataConfig:
    """Demo shards written before the run when a pipeline has no input (see ``capfilt demo-data``)."""

    shards: int = 4
    samples_per_shard: int = 64
    seed: int = 0
    correct_fraction: float = 0.4
    video: bool = False  # clips (mp4/webm) of the demo world instead of images

    def check(self) -> list[tuple[str, str]]:
        return [
            *_range("shards", self.shards, 1, 100_000),
            *_range("samples_per_shard", self.samples_per_shard, 1, 1_000_000),
            *_range("correct_fraction", self.correct_fraction, 0.0, 1.0),
        ]


@dataclass(frozen=True)
class RunConfig:
    """One named pipeline, fully resolved: every stage's settings plus the Beam runner and its options."""

    name: str = "demo"
    input: str | None = None
    output: str | None = None
    seed: int = 0
    runner: str = "FnApiRunner"
    beam: dict[str, Any] = field(default_factory=dict)
    strict: bool = False
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    demo_data: DemoDataConfig | None = None

    def check(self) -> list[tuple[str, str]]:
        problems = _range("seed", self.seed, 0, 2**63 - 1)
        if self.filter.score == "similarity" and not self.similarity.enabled:
            problems.append(("filter.score", "similarity needs similarity.model (itc or a dual encoder checkpoint)"))
        return problems

    def beam_args(self) -> list[str]:
        """The Beam flags this pipeline names, runner first."""
        args = [f"--runner={self.runner}"]
        for key, value in self.beam.items():
            for item in value if isinstance(value, list) else [value]:
                args.append(f"--{key}" if item is True else f"--{key}={item}")
        return args

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def output_settings(self) -> dict:
        """The settings that decide an output shard's bytes; a resumed run must share them with the shards it
        skips. Where the work runs (device, threads, runner) and what is checked afterwards (gates) are not."""
        runtime = {"dtype": self.runtime.dtype, "trust_remote_code": self.runtime.trust_remote_code}
        settings = {
            "seed": self.seed,
            "captioner": dataclasses.asdict(self.captioner),
            "filter": dataclasses.asdict(self.filter),
            "decode": dataclasses.asdict(self.decode),
            "runtime": runtime,
        }
        # Settings added later are recorded only when used, so folders made before them still resume.
        if self.filter.score == "itm":
            del settings["filter"]["score"]
        video, default = dataclasses.asdict(self.video), dataclasses.asdict(VideoConfig())
        frame_choice = video.pop("frame_choice")
        del default["frame_choice"]
        if video != default:
            settings["video"] = video
        # Every folder made before frame_choice existed sampled uniformly and recorded none, so a run of any other
        # choice (the default now) records it: resuming such a folder is refused, not a mix of two samplings.
        if frame_choice != LEGACY_FRAME_CHOICE:
            settings.setdefault("video", {})["frame_choice"] = frame_choice
        if self.similarity.enabled:
            settings["similarity"] = dataclasses.asdict(self.similarity)
        return settings

    def fingerprint(self) -> str:
        return settings_fingerprint(self.output_settings())

    def settings_known(self) -> bool:
        """Whether ``output_settings`` are final here: ``runtime.dtype: auto`` resolves where the models run."""
        return self.runtime.dtype != "auto"

    def resolved(self) -> RunConfig:
        """This config with ``runtime.dtype: auto`` replaced by what it means on this machine's device. The dtype
        decides output bytes, so settings and fingerprints record the resolved one: shards made in bfloat16 and
        in float32 never pass for each other. Call it where the models run (it imports torch)."""
        if self.runtime.dtype != "auto":
            return self
        from ..models.loading import resolve_dtype

        dtype = resolve_dtype(self.runtime.dtype, self.runtime.device)
        return dataclasses.replace(self, runtime=dataclasses.replace(self.runtime, dtype=dtype))


def settings_fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def settings_difference(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key old -> new`` for every leaf that differs between two ``output_settings`` dicts."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) or isinstance(b, dict):  # a section recorded on one side only: its leaves differ
            changes += settings_difference(a or {}, b or {}, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key} {a!r} -> {b!r}")
    return changes


def _range(key: str, value, low, high) -> list[tuple[str, str]]:
    return [] if low <= value <= high else [(key, f"must be between {low} and {high}, not {value!r}")]


def _choice(key: str, value, choices) -> list[tuple[str, str]]:
    return [] if value in choices else [(key, f"must be one of {', '.join(choices)}, not {value!r}")]


def load_config(
    pipeline: str, config_file: str | None = None, overrides: list[str] = (), **cli: str | None
) -> RunConfig:
    """Read ``pipeline`` from ``config_file`` (./pipelines.yaml, else the packaged copy), apply ``--set``
    overrides and the ``input``/``output`` given on the command line, and validate the result.

    Raises ConfigError naming the file and the key.
    """
    path = Path(config_file) if config_file else _default_config_file()
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: not readable YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(document, dict) or not isinstance(document.get("pipelines"), dict):
        raise ConfigError(f"{source}: expected a mapping with a 'pipelines' section")
    unknown = set(document) - {"defaults", "pipelines"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    pipelines = document["pipelines"]
    if pipeline not in pipelines:
        raise ConfigError(f"{source}: no pipeline named {pipeline!r} (have: {', '.join(pipelines)})")
    merged = _deep_merge(document.get("defaults") or {}, pipelines[pipeline] or {})
    merged["name"] = pipeline
    for item in overrides:
        _apply_override(merged, item)
    for key, value in cli.items():
        if value is not None:
            merged[key] = value
    try:
        return _build(RunConfig, merged, source, "")
    except ConfigError as exc:
        # A problem in a value given with --set is the command line's, not the file's.
        key = str(exc)[len(source) + 2 :].split(":", 1)[0]
        if any(key == item.split("=", 1)[0] for item in overrides):
            raise ConfigError(f"--set {str(exc)[len(source) + 2 :]}") from None
        raise


def _default_config_file() -> Path:
    local = Path("pipelines.yaml")
    return local if local.is_file() else PACKAGED_CONFIG


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "beam":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_override(merged: dict, item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected KEY=VALUE")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    target = merged
    parts = key.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    target[parts[-1]] = value


def _build(cls, data: Any, source: str, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'pipeline'}: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{source}: {prefix}{key}: unknown key")
    values = {}
    for name in names & set(data):
        values[name] = _coerce(hints[name], data[name], source, prefix + name)
    config = cls(**values)
    problems = config.check()
    if problems:
        key, message = problems[0]
        raise ConfigError(f"{source}: {prefix}{key}: {message}")
    return config


def _coerce(hint, value, source: str, key: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, key + ".")
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return _build(option, value, source, key + ".")
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, dict) and isinstance(value, origin):
            return value
    expected = " or ".join("null" if o is type(None) else getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{source}: {key}: expected {expected}, got {value!r}")
