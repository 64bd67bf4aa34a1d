"""The demo world: procedural scenes of one or two shapes, their one true caption, and noisy web shards.

Every image has exactly one canonical caption, so caption quality is measurable exactly: a caption is
correct when it equals the canonical one after ``normalise``. Captions of different scenes often differ by a
single word (a colour, a shape, a size, a position or the background), which is what makes the filter's job
non-trivial. ``write_demo_shards`` writes WebDataset shards whose web captions are damaged in known ways
(``NOISE_KINDS``), with the ground truth kept in each sample's json; with ``duplicates`` it also copies samples
into other shards (``plan_copies``), each copy's json naming its original, the ground truth of deduplication.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tarfile
from dataclasses import dataclass

from PIL import Image, ImageDraw

from ..pipeline.shard.tar_writer import DeterministicTarWriter

COLOURS = {
    "red": (215, 35, 35),
    "yellow": (240, 225, 40),
    "green": (40, 165, 60),
    "blue": (40, 75, 220),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "grey": (125, 125, 125),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom")
# Two-object scenes are laid out side by side or one above the other; the caption names the first slot first.
LAYOUTS = (("left", "right"), ("top", "bottom"))
# What one-word changes of a caption change (perturb_scene).
FACTORS = ("colour", "shape", "size", "position", "background")
PROMPT = "a picture of"
NOISE_KINDS = ("correct", "other_image", "one_word_off", "boilerplate", "empty", "missing")
# Which scenes a world draws. "default": one or two objects, every attribute drawn on its own. "lookalike": always
# two objects that differ in one attribute only (size, colour or shape), so captions of different scenes are
# closer and getting a caption right takes binding every word to the right object.
WORLDS = ("default", "lookalike")
VOCABULARY = tuple(
    sorted(
        set(PROMPT.split())
        | {"on", "the", "and", "background"}
        | set(COLOURS)
        | set(SHAPES)
        | set(SIZES)
        | set(POSITIONS)
    )
)
IMAGE_SIZE = 128
JPEG_QUALITY = 90
PNG_FRACTION = 0.1
# Relative object sizes (fraction of the image side) before jitter.
SIZE_FRACTION = {"small": 0.25, "large": 0.4}
SLOT_CENTRE = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75)}


@dataclass(frozen=True, slots=True)
class Thing:
    """One object of a scene: its size, colour, shape and position word."""

    size: str
    colour: str
    shape: str
    position: str


@dataclass(frozen=True, slots=True)
class Scene:
    """A background colour, one or two ``Thing``s in caption order, and a seed for the pixel jitter."""

    background: str
    things: tuple[Thing, ...]
    jitter: int


def sample_scene(rng: random.Random, world: str = "default") -> Scene:
    """Draw a random scene.

    Args:
        rng: the random source; the scene depends only on its state.
        world: one of ``WORLDS``.
    """
    if world == "lookalike":
        return _lookalike_scene(rng)
    if world != "default":
        raise ValueError(f"unknown world {world!r}; expected one of {', '.join(WORLDS)}")
    background = rng.choice(sorted(COLOURS))
    colours = [c for c in sorted(COLOURS) if c != background]
    if rng.random() < 0.5:
        positions: tuple[str, ...] = (rng.choice(POSITIONS),)
    else:
        positions = rng.choice(LAYOUTS)
    things = tuple(Thing(rng.choice(SIZES), rng.choice(colours), rng.choice(SHAPES), p) for p in positions)
    return Scene(background, things, rng.randrange(2**31))


def _lookalike_scene(rng: random.Random) -> Scene:
    """Two objects, the second a copy of the first with one of size, colour or shape changed."""
    background = rng.choice(sorted(COLOURS))
    colours = [c for c in sorted(COLOURS) if c != background]
    first, second = rng.choice(LAYOUTS)
    thing = Thing(rng.choice(SIZES), rng.choice(colours), rng.choice(SHAPES), first)
    fields = {"size": thing.size, "colour": thing.colour, "shape": thing.shape, "position": second}
    factor = rng.choice(("size", "colour", "shape"))
    values = {"size": SIZES, "colour": colours, "shape": SHAPES}[factor]
    fields[factor] = rng.choice([v for v in values if v != fields[factor]])
    return Scene(background, (thing, Thing(**fields)), rng.randrange(2**31))


def _describe(thing: Thing) -> str:
    return f"a {thing.size} {thing.colour} {thing.shape} on the {thing.position}"


def canonical_caption(scene: Scene) -> str:
    """The one correct caption of ``scene``, e.g. "a small red circle on the left and a large blue square
    on the right on a green background".

    Args:
        scene: the scene to describe.
    """
    return " and ".join(_describe(t) for t in scene.things) + f" on a {scene.background} background"


def normalise(text: str) -> str:
    """Lower-case ``text``, drop punctuation and collapse whitespace, the comparison used for correctness.

    Args:
        text: any caption.
    """
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.lower()).split())


def place(thing: Thing, rng: random.Random, side: int) -> tuple[float, float, float]:
    """Where ``thing`` is drawn in an image of ``side`` pixels: its centre and half its size, jittered."""
    half = side * SIZE_FRACTION[thing.size] * rng.uniform(0.92, 1.08) / 2
    cx, cy = SLOT_CENTRE[thing.position]
    # Jitter the centre a little so that no two images of the same caption are identical; the bounds keep
    # two large objects from touching.
    return side * (cx + rng.uniform(-0.03, 0.03)), side * (cy + rng.uniform(-0.03, 0.03)), half


def draw_thing(draw: ImageDraw.ImageDraw, thing: Thing, cx: float, cy: float, half: float) -> None:
    """Draw ``thing``'s shape in its colour, centred at (``cx``, ``cy``), ``2 * half`` pixels across."""
    box = (cx - half, cy - half, cx + half, cy + half)
    fill = COLOURS[thing.colour]
    if thing.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif thing.shape == "square":
        draw.rectangle(box, fill=fill)
    elif thing.shape == "triangle":
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    elif thing.shape == "cross":
        arm = half / 3
        draw.rectangle((cx - half, cy - arm, cx + half, cy + arm), fill=fill)
        draw.rectangle((cx - arm, cy - half, cx + arm, cy + half), fill=fill)
    else:
        raise ValueError(f"unknown shape {thing.shape!r}")


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``scene`` as an RGB image.

    Args:
        scene: what to draw; its ``jitter`` seed fixes the exact object sizes and offsets.
        size: the side of the square image in pixels.
    """
    rng = random.Random(scene.jitter)
    image = Image.new("RGB", (size, size), COLOURS[scene.background])
    draw = ImageDraw.Draw(image)
    for thing in scene.things:
        draw_thing(draw, thing, *place(thing, rng, size))
    return image


# ---- noisy web captions -------------------------------------------------------------------------------

_SPAM = (
    "click here to buy",
    "free shipping",
    "free shipping on all orders",
    "best price guaranteed",
    "buy now limited offer",
    "sale ends today",
    "untitled",
    "no description available",
    "image",
    "photo",
    "shop now and save",
    "download free hd wallpaper",
    "high quality royalty free image",
)


def boilerplate_caption(rng: random.Random) -> str:
    """A spam or file-name style web caption, varied by random numbers and templates.

    Args:
        rng: the random source.
    """
    n = rng.randrange(10, 100000)
    templates = (
        lambda: f"IMG_{rng.randrange(1000, 10000)}.JPG",
        lambda: f"DSC{rng.randrange(10000, 100000)}.jpg",
        lambda: f"stock photo {n}",
        lambda: rng.choice(_SPAM),
        lambda: f"{rng.choice(_SPAM)} {rng.choice(_SPAM)}",
        lambda: f"{rng.choice(_SPAM).upper()}!!!",
        lambda: f"photo by user{n}",
        lambda: f"screenshot 20{rng.randrange(10, 27)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        lambda: f"wallpaper {rng.choice((800, 1024, 1920))}x{rng.choice((600, 768, 1080))}",
        # In-domain words in spam, so the filter cannot reject on vocabulary alone.
        lambda: f"{rng.choice(sorted(COLOURS))} {rng.choice(SHAPES)} png free download",
        lambda: f"{rng.choice(SHAPES)} {rng.choice(SHAPES)} {rng.choice(SHAPES)} best {rng.choice(SHAPES)}",
        lambda: f"{n} views",
    )
    return rng.choice(templates)()


def perturb_scene(scene: Scene, rng: random.Random, factor: str | None = None) -> Scene:
    """``scene`` with one factor (the background, or one object's colour, shape, size or position) replaced
    by another valid value; its caption differs from the original's in exactly one word.

    Args:
        scene: the scene to change.
        rng: the random source.
        factor: which of ``FACTORS`` to change; drawn from ``rng`` when None.
    """
    if factor is None:
        factor = rng.choice(FACTORS)
    if factor == "background":
        new = rng.choice([c for c in sorted(COLOURS) if c != scene.background])
        return Scene(new, scene.things, scene.jitter)
    index = rng.randrange(len(scene.things))
    thing = scene.things[index]
    values = {"colour": sorted(COLOURS), "shape": SHAPES, "size": SIZES, "position": POSITIONS}[factor]
    fields = {"size": thing.size, "colour": thing.colour, "shape": thing.shape, "position": thing.position}
    fields[factor] = rng.choice([v for v in values if v != fields[factor]])
    things = list(scene.things)
    things[index] = Thing(**fields)
    return Scene(scene.background, tuple(things), scene.jitter)


def one_word_off(scene: Scene, rng: random.Random) -> str:
    """The canonical caption of ``scene`` with one factor swapped for another valid value (``perturb_scene``).

    Args:
        scene: the true scene.
        rng: the random source.
    """
    return canonical_caption(perturb_scene(scene, rng))


def web_caption(scene: Scene, kind: str, rng: random.Random, world: str = "default") -> str | None:
    """The web caption of a sample of noise ``kind`` (None for ``missing``: no txt member at all).

    Args:
        scene: the true scene.
        kind: one of ``NOISE_KINDS``.
        rng: the random source.
        world: the world ``other_image`` captions come from.
    """
    truth = canonical_caption(scene)
    if kind == "correct":
        return truth
    if kind == "other_image":
        other = truth
        while normalise(other) == normalise(truth):
            other = canonical_caption(sample_scene(rng, world))
        return other
    if kind == "one_word_off":
        return one_word_off(scene, rng)
    if kind == "boilerplate":
        return boilerplate_caption(rng)
    if kind == "empty":
        return rng.choice(("", " ", "  ", "\n", " \t "))
    if kind == "missing":
        return None
    raise ValueError(f"unknown noise kind {kind!r}; expected one of {', '.join(NOISE_KINDS)}")


def parse_noise_mix(text: str) -> dict[str, float]:
    """A noise mix written as ``"correct=0.3,one_word_off=0.5,other_image=0.2"``: relative weights per kind of
    ``NOISE_KINDS``, kinds not named weighing 0. Raises ``ValueError`` naming what is wrong."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, weight = part.partition("=")
        try:
            if not sep:
                raise ValueError
            mix[kind.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"{part!r} is not KIND=WEIGHT") from None
    check_noise_mix(mix)
    return mix


def check_noise_mix(mix: dict[str, float]) -> None:
    """Raise ``ValueError`` unless ``mix`` weighs known noise kinds with finite weights >= 0, not all 0."""
    unknown = sorted(set(mix) - set(NOISE_KINDS))
    if unknown:
        raise ValueError(f"unknown noise kind {unknown[0]!r}; expected some of {', '.join(NOISE_KINDS)}")
    bad = [kind for kind, weight in mix.items() if not 0.0 <= weight < float("inf")]
    if bad:
        raise ValueError(f"noise kind {bad[0]!r} needs a weight >= 0, got {mix[bad[0]]}")
    if not sum(mix.values()) > 0:
        raise ValueError("a noise mix needs at least one kind with a weight above 0")


def noise_kind(rng: random.Random, correct_fraction: float, mix: dict[str, float] | None = None) -> str:
    """Draw a noise kind: from ``mix`` (weights per kind, ``check_noise_mix``) when given; otherwise
    ``correct`` with probability ``correct_fraction``, else a uniform other kind."""
    if mix is not None:
        kinds = [kind for kind in NOISE_KINDS if mix.get(kind, 0.0) > 0]
        return rng.choices(kinds, weights=[mix[kind] for kind in kinds])[0]
    if rng.random() < correct_fraction:
        return "correct"
    return rng.choice(NOISE_KINDS[1:])


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """Encode ``image`` as ``jpg`` (fixed quality, no metadata) or ``png`` bytes."""
    buffer = io.BytesIO()
    if fmt == "jpg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_sample(
    key: str,
    rng: random.Random,
    correct_fraction: float = 0.4,
    noise_mix: dict[str, float] | None = None,
    world: str = "default",
    video: bool = False,
    cut_rng: random.Random | None = None,
    cuts: float = 0.0,
) -> dict[str, bytes]:
    """One WebDataset sample as ``{member name: bytes}``: image (or clip), web caption (unless missing) and json.

    Args:
        key: the sample key, e.g. ``00000_000012``.
        rng: the random source.
        correct_fraction: the probability that the web caption is the canonical one.
        noise_mix: weights per noise kind (``parse_noise_mix``), used instead of ``correct_fraction``.
        world: one of ``WORLDS``; the json names it unless it is the default (whose bytes stay as they were).
        video: a clip of the scene (``video_world``: objects and camera moving) instead of a still image.
        cut_rng, cuts: with ``video``, the clip cuts to another scene with probability ``cuts``, drawn from
            ``cut_rng`` (``video_world.plan_cut``); the json's ``cut`` then says when and which.
    """
    scene = sample_scene(rng, world)
    kind = noise_kind(rng, correct_fraction, noise_mix)
    text = web_caption(scene, kind, rng, world)
    cut = None
    if video:
        from .video_world import make_clip, plan_cut

        planned = plan_cut(cut_rng, cuts, world) if cuts else None
        fmt, media, cut = make_clip(scene, rng, planned, cut_rng)
    else:
        fmt = "png" if rng.random() < PNG_FRACTION else "jpg"
        media = encode_image(render(scene), fmt)
    meta = {"gt_caption": canonical_caption(scene), "noise": kind, "url": f"https://demo.capfilt/{key}.{fmt}"}
    if cut is not None:
        meta["cut"] = cut
    if world != "default":
        meta["world"] = world
    members = {f"{key}.{fmt}": media}
    if text is not None:
        members[f"{key}.txt"] = text.encode("utf-8")
    members[f"{key}.json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    return members


def write_demo_shards(
    output_dir: str,
    shards: int = 4,
    samples_per_shard: int = 64,
    seed: int = 0,
    correct_fraction: float = 0.4,
    noise_mix: dict[str, float] | None = None,
    world: str = "default",
    video: bool = False,
    duplicates: float = 0.0,
    cuts: float = 0.0,
) -> list[str]:
    """Write ``shards`` demo WebDataset tars ``00000.tar``, ``00001.tar``, ... into ``output_dir``.

    The same arguments always give byte-identical tars: each shard has its own random stream derived from
    ``seed`` and its index, so shards do not depend on each other. Injected copies (``duplicates``) come from a
    stream of their own, so the original samples are the same bytes with or without them.

    Args:
        output_dir: a local directory, created if needed.
        shards: the number of tars.
        samples_per_shard: samples in each tar.
        seed: the world seed.
        correct_fraction: the fraction of samples whose web caption is correct; the rest is spread evenly
            over the other noise kinds.
        noise_mix: weights per noise kind (``parse_noise_mix``), replacing ``correct_fraction``: other
            proportions of the same kinds of damage.
        world: one of ``WORLDS``.
        video: clips (mp4, some webm) instead of images.
        duplicates: copy this fraction of the samples into other shards (``plan_copies``, ``make_copy``).
        cuts: with ``video``, this fraction of the clips cut to another scene part-way (``video_world.Cut``),
            drawn from a stream of their own, so the clips without a cut are the same bytes at any ``cuts``.

    Returns:
        The paths of the tars, in order.
    """
    if not 0.0 <= correct_fraction <= 1.0:
        raise ValueError(f"correct_fraction must be within [0, 1], got {correct_fraction}")
    if noise_mix is not None:
        check_noise_mix(noise_mix)
    if world not in WORLDS:
        raise ValueError(f"unknown world {world!r}; expected one of {', '.join(WORLDS)}")
    if not 0.0 <= duplicates <= 1.0:
        raise ValueError(f"duplicates must be within [0, 1], got {duplicates}")
    if not 0.0 <= cuts <= 1.0 or (cuts and not video):
        raise ValueError(f"cuts must be within [0, 1], and only with video clips, got {cuts}")
    os.makedirs(output_dir, exist_ok=True)
    paths, temps = [], []
    for shard in range(shards):
        rng = random.Random(f"capfilt-demo/{seed}/{shard}")
        cut_rng = random.Random(f"capfilt-demo-cuts/{seed}/{shard}")
        path = os.path.join(output_dir, f"{shard:05d}.tar")
        temp = f"{path}.tmp-{os.getpid()}"
        with open(temp, "wb") as handle, DeterministicTarWriter(handle) as writer:
            for index in range(samples_per_shard):
                for name, data in make_sample(
                    f"{shard:05d}_{index:06d}", rng, correct_fraction, noise_mix, world, video, cut_rng, cuts
                ).items():
                    writer.add(name, data)
        paths.append(path)
        temps.append(temp)
    copies = plan_copies(shards, samples_per_shard, seed, duplicates)
    if copies:
        # A shard takes copies of samples of other shards, so every shard is written before any copy is placed;
        # the final names appear only with the copies in them.
        _write_with_copies(temps, paths, copies, correct_fraction, noise_mix)
    else:
        for temp, path in zip(temps, paths, strict=True):
            os.replace(temp, path)
    return paths


# ---- injected copies ------------------------------------------------------------------------------------------

# How a copy differs from its original: the same bytes, the same picture saved again at another JPEG quality, or
# the picture resized and saved again. Only a byte copy has its original's hash; the others take an embedding to find.
DUPLICATE_KINDS = ("bytes", "reencode", "resize")
REENCODE_QUALITIES = (60, 70, 75, 80, 85, 95)  # never JPEG_QUALITY: a re-encode must not give the same bytes
RESIZE_SCALES = (0.5, 0.9)
SECOND_COPY = 0.25  # the chance a copied sample gets a second copy, so some groups hold three samples
SAME_CAPTION = 0.5  # the chance a copy keeps its original's web caption rather than getting a caption of its own


@dataclass(frozen=True, slots=True)
class Copy:
    """One injected copy: its ``key`` in shard ``target`` before that shard's original sample ``position`` (after
    the last one when it equals the shard's size), the key it copies (``of``), its ``kind`` (``DUPLICATE_KINDS``),
    whether it keeps the original's web caption (``same_caption``), and the seed of its own draws."""

    key: str
    of: str
    target: int
    position: int
    kind: str
    same_caption: bool
    seed: int


def plan_copies(shards: int, samples_per_shard: int, seed: int, fraction: float) -> list[Copy]:
    """Which samples are copied, where each copy goes and what it is: ``round(fraction × samples)`` distinct
    samples, each copied once (or twice, ``SECOND_COPY``) into another shard (the same one when there is one).

    Everything is drawn from one stream of its own before any sample is read, so the shards' streams, and the
    original samples, are the same as without copies.
    """
    rng = random.Random(f"capfilt-demo/{seed}/duplicates")
    total = shards * samples_per_shard
    copies: list[Copy] = []
    for source in sorted(rng.sample(range(total), round(fraction * total))):
        shard, index = divmod(source, samples_per_shard)
        for _ in range(2 if rng.random() < SECOND_COPY else 1):
            target = rng.choice([s for s in range(shards) if s != shard] or [shard])
            copies.append(
                Copy(
                    key=f"{target:05d}_dup{len(copies):06d}",
                    of=f"{shard:05d}_{index:06d}",
                    target=target,
                    position=rng.randrange(samples_per_shard + 1),
                    kind=rng.choice(DUPLICATE_KINDS),
                    same_caption=rng.random() < SAME_CAPTION,
                    seed=rng.randrange(2**31),
                )
            )
    return copies


_THING = re.compile(r"\ba (\w+) (\w+) (\w+) on the (\w+)")


def scene_of(caption: str) -> Scene:
    """The scene a canonical caption describes (jitter 0: a caption does not fix the pixels); ``ValueError`` for
    any other text."""
    body, _, background = caption.rpartition(" on a ")
    scene = Scene(background.removesuffix(" background"), tuple(Thing(*m) for m in _THING.findall(body)), 0)
    if not scene.things or canonical_caption(scene) != caption:
        raise ValueError(f"not a canonical caption: {caption!r}")
    return scene


def make_copy(
    copy: Copy, original: dict[str, bytes], correct_fraction: float = 0.4, noise_mix: dict[str, float] | None = None
) -> dict[str, bytes]:
    """The members of ``copy`` of the sample ``original`` (``{extension: bytes}``). Its json is the original's
    ground truth (the same scene, so the same ``gt_caption``) with its own url, the noise kind of its own web
    caption, and ``"duplicate": {"of": ORIGINAL_KEY, "kind": KIND}``. A clip is only ever copied byte for byte.
    """
    rng = random.Random(copy.seed)
    meta = json.loads(original["json"])
    text = original.get("txt")
    [(fmt, media)] = [(ext, data) for ext, data in original.items() if ext not in ("txt", "json")]
    kind = copy.kind if fmt in ("jpg", "png") else "bytes"
    if kind != "bytes":
        image = Image.open(io.BytesIO(media)).convert("RGB")
        if kind == "resize":
            scale = rng.uniform(*RESIZE_SCALES)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        quality = rng.choice(REENCODE_QUALITIES) if kind == "reencode" else JPEG_QUALITY
        image.save(buffer, format="JPEG", quality=quality)
        fmt, media = "jpg", buffer.getvalue()
    if not copy.same_caption:
        # Another caption of the same scene, drawn as an original's is: right, one word off, spam, ...
        meta["noise"] = noise_kind(rng, correct_fraction, noise_mix)
        caption = web_caption(scene_of(meta["gt_caption"]), meta["noise"], rng, meta.get("world", "default"))
        text = caption.encode("utf-8") if caption is not None else None
    meta.update(url=f"https://demo.capfilt/{copy.key}.{fmt}", duplicate={"of": copy.of, "kind": kind})
    members = {f"{copy.key}.{fmt}": media}
    if text is not None:
        members[f"{copy.key}.txt"] = text
    members[f"{copy.key}.json"] = json.dumps(meta, sort_keys=True).encode("utf-8")
    return members


def _read_samples(path: str) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """A demo tar's samples in order: ``(key, [(member name, bytes), ...])``."""
    samples: list[tuple[str, list[tuple[str, bytes]]]] = []
    with tarfile.open(path, mode="r|") as tar:
        for info in tar:
            key = info.name.split(".", 1)[0]
            if not samples or samples[-1][0] != key:
                samples.append((key, []))
            samples[-1][1].append((info.name, tar.extractfile(info).read()))
    return samples


def _write_with_copies(
    temps: list[str], paths: list[str], copies: list[Copy], correct_fraction: float, noise_mix: dict | None
) -> None:
    """Write each shard's tar from its copy-free temporary one (``temps``) with its copies among its samples."""
    wanted = {copy.of for copy in copies}
    originals = {
        key: {name.split(".", 1)[1]: data for name, data in members}
        for temp in temps
        for key, members in _read_samples(temp)
        if key in wanted
    }
    for shard, (temp, path) in enumerate(zip(temps, paths, strict=True)):
        before: dict[int, list[Copy]] = {}
        for copy in copies:
            if copy.target == shard:
                before.setdefault(copy.position, []).append(copy)
        if not before:
            os.replace(temp, path)
            continue
        samples = _read_samples(temp)
        staged = f"{path}.tmp-{os.getpid()}-copies"
        with open(staged, "wb") as handle, DeterministicTarWriter(handle) as writer:
            for position in range(len(samples) + 1):
                for copy in before.get(position, ()):
                    for name, data in make_copy(copy, originals[copy.of], correct_fraction, noise_mix).items():
                        writer.add(name, data)
                for name, data in samples[position][1] if position < len(samples) else ():
                    writer.add(name, data)
        os.replace(staged, path)
        os.remove(temp)
