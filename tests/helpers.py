"""Helpers the tests share: tiny shards built on the fly, the tests' standard run of the real entry point, and a
generated corpus of every kind of damage web data shows, each sample with the outcome it must get."""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import tarfile
import zlib
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageStat

from capfilt.cli import main
from capfilt.pipeline.shard.tar_writer import DeterministicTarWriter

WORDS = "a picture of red green blue circle square triangle small large on the left right and".split()


class NetworkUsed(RuntimeError):
    """A test tried to reach a host that is not this machine (conftest's guard raises it)."""


# ---- shards ----


def image_bytes(color=(200, 30, 30), size=(24, 16), fmt="JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]], links=()) -> Path:
    """A tar at ``path`` holding ``members`` (name, bytes) in order, then ``links`` (name, tarfile type, target;
    type None adds ``target`` as the bytes of a regular member after the links)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle, DeterministicTarWriter(handle) as tar:
        for name, data in members:
            tar.add(name, data)
        for name, kind, target in links:
            if kind is None:
                tar.add(name, target)
                continue
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar._tar.addfile(info)
    return path


def sample_members(key: str, text: str | None = "a red square", meta: dict | None = None, color=(200, 30, 30)):
    """The members of one ordinary sample: jpg, optional txt, json."""
    members = [(f"{key}.jpg", image_bytes(color))]
    if text is not None:
        members.append((f"{key}.txt", text.encode()))
    members.append((f"{key}.json", json.dumps(meta or {"url": f"https://example.com/{key}.jpg"}).encode()))
    return members


# ---- the tests' standard run ----


TEST_SETTINGS = {
    "captioner.num_captions": 3,
    "captioner.min_length": 2,
    "captioner.max_length": 5,
    "captioner.batch_size": 4,
    # Random weights score everything near 0.5: threshold 0 keeps all unless a test says otherwise.
    "filter.threshold": 0,
    "runtime.threads": 1,
}


def run_argv(tiny_models, input_pattern: str, out) -> list[str]:
    """`capfilt run demo` over ``input_pattern`` with the tiny models and the tests' settings."""
    settings = {"captioner.model": tiny_models[0], "filter.model": tiny_models[1], **TEST_SETTINGS}
    sets = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    return ["run", "demo", "--input", input_pattern, "--output", str(out), *sets]


def run_in_empty_folder(folder: Path, pipeline: str) -> tuple[int, Path]:
    """`capfilt run PIPELINE` with no arguments from an empty ``folder``, as a new user (or `make demo`) runs it;
    returns the exit code and the folder the pipeline writes its demo input and output under."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        code = main(["run", pipeline])
    return code, folder / ("capfilt-demo" if pipeline == "demo" else f"capfilt-{pipeline}")


def run(tiny_models, inp, out, *extra, pattern="*.tar"):
    return main([*run_argv(tiny_models, str(inp / pattern), out), *extra])


def rows(out: Path):
    return [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes, with the clock-dependent fields of stats files removed."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "report.json":
            data = path.read_bytes()
            if path.name.endswith("_stats.json"):
                stats = {k: v for k, v in json.loads(data).items() if k not in ("seconds", "duration")}
                for shard in stats.get("per_shard", {}).values():
                    shard.pop("seconds")
                data = json.dumps(stats).encode()
            files[str(path.relative_to(out))] = data
    return files


def assert_complete(path: Path) -> None:
    """A file under a final name must be whole: a tar that reads to its end, parquet that loads, valid json."""
    if path.suffix == ".tar":
        with tarfile.open(path) as tar:
            for member in tar:
                tar.extractfile(member).read()
    elif path.suffix == ".parquet":
        pq.read_table(path)
    elif path.name.endswith(".json"):
        json.loads(path.read_text())


# ---- the messy corpus ----


RED = (200, 40, 40)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def picture(size=(48, 32), mode="RGB") -> Image.Image:
    image = Image.new("RGB", size, RED)
    for x in range(0, size[0], 4):  # some structure, so codecs have something to encode
        for y in range(0, size[1], 3):
            image.putpixel((x, y), (x * 5 % 256, y * 7 % 256, 90))
    return image.convert(mode) if mode != "RGB" else image


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return encode(picture((40, 20)), "JPEG", exif=exif.tobytes())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels: a decompression bomb's header, without the bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def sixteen_bit_png() -> bytes:
    image = Image.new("I;16", (16, 16))
    image.putdata([i * 250 for i in range(256)])
    return encode(image, "PNG")


# key -> (image member name suffix or None, image bytes, caption bytes or None, json bytes or None, expected status,
#         a fragment the error column must contain)
def decodable() -> dict:
    jpeg = encode(picture(), "JPEG")
    return {
        "jpeg_baseline": ("jpg", jpeg),
        "jpeg_progressive": ("jpg", encode(picture(), "JPEG", progressive=True)),
        "jpeg_cmyk": ("jpg", encode(picture(mode="CMYK"), "JPEG")),
        "jpeg_exif_rotated": ("jpeg", exif_rotated_jpeg()),
        "png_rgba": ("png", encode(picture(mode="RGBA"), "PNG")),
        "png_palette": ("png", encode(picture().convert("P"), "PNG")),
        "png_gray": ("png", encode(picture(mode="L"), "PNG")),
        "png_16bit": ("png", sixteen_bit_png()),
        "webp": ("webp", encode(picture(), "WEBP")),
        "gif": ("gif", encode(picture().convert("P"), "GIF")),
        "bmp": ("bmp", encode(picture(), "BMP")),
        "tiff": ("tif", encode(picture(), "TIFF")),
        "one_pixel": ("png", encode(picture((1, 1)), "PNG")),
        "wide_4000x3": ("jpg", encode(picture((4000, 3)), "JPEG")),
    }


def broken() -> dict:
    jpeg = encode(picture((64, 64)), "JPEG")
    return {
        "random_bytes": ("jpg", random.Random(1).randbytes(3000), "undecodable_image", "cannot identify"),
        "zero_bytes": ("jpg", b"", "undecodable_image", "cannot identify"),
        "html_page": (
            "jpg",
            b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
            "undecodable_image",
            "cannot identify",
        ),
        "jpeg_cut_short": ("jpg", jpeg[: len(jpeg) // 2], "undecodable_image", "truncated"),
        "pixel_bomb": ("png", png_header_only(100_000, 100_000), "image_too_large", "pixel limit"),
    }


CAPTION = b"a red square"
JSON = b'{"url": "https://example.com/x.jpg"}'
UNICODE = "一只红色的猫 🐱 قطة حمراء"


def messy_members():
    """(members, links, expected) for one shard: expected maps key -> (status, error fragment)."""
    members, expected = [], {}
    for key, (ext, data) in decodable().items():
        members += [(f"{key}.{ext}", data), (f"{key}.txt", CAPTION), (f"{key}.json", JSON)]
        expected[key] = ("kept", "")
    for key, (ext, data, status, fragment) in broken().items():
        members += [(f"{key}.{ext}", data), (f"{key}.txt", CAPTION)]
        expected[key] = (status, fragment)
    image = encode(picture(), "JPEG")
    odd_text = {
        "no_txt": (None, "kept", "no_txt"),
        "blank_txt": (b"  \n\t ", "kept", "blank_txt"),
        "latin1_txt": ("café rouge".encode("latin-1"), "kept", "txt_not_utf8"),
        # [CLS] + 262,144 words + [SEP], of which the tiny ITM model reads 64: scored on a prefix, written whole.
        "huge_txt": (b"red " * 262_144, "kept", "text_truncated: web caption, the filter read 64 of its 262146 tokens"),
        "unicode_txt": (UNICODE.encode(), "kept", ""),
    }
    for key, (text, status, fragment) in odd_text.items():
        members.append((f"{key}.jpg", image))
        if text is not None:
            members.append((f"{key}.txt", text))
        expected[key] = (status, fragment)
    members += [("bad_json.jpg", image), ("bad_json.json", b"{not json")]
    members += [("list_json.jpg", image), ("list_json.json", b"[1, 2]")]
    members += [("no_image.txt", CAPTION), ("no_image.json", JSON)]
    members += [("dir.v1/sub.x/key.jpg", image), ("dir.v1/sub.x/key.txt", CAPTION)]
    members += [("../escape.jpg", image), ("../escape.txt", CAPTION), ("/abs/evil.jpg", image)]
    expected.update(
        {
            "bad_json": ("invalid_json", "json member unreadable"),
            "list_json": ("invalid_json", "not an object"),
            "no_image": ("no_image", "no image member"),
            "dir.v1/sub.x/key": ("kept", ""),
            "../escape": ("unsafe_path", "leaves the archive"),
            "/abs/evil": ("unsafe_path", "leaves the archive"),
            "symlink": ("no_image", "link_member_ignored"),
            "hardlink": ("no_image", "link_member_ignored"),
        }
    )
    links = [
        ("symlink.jpg", tarfile.SYMTYPE, "/etc/passwd"),
        ("symlink.txt", None, CAPTION),
        ("hardlink.jpg", tarfile.LNKTYPE, "jpeg_baseline.jpg"),
        ("folder", tarfile.DIRTYPE, ""),
    ]
    return members, links, expected


def write_messy_input(inp: Path) -> dict:
    """The messy corpus as five shards under ``inp`` (damaged samples, gzip, a cut archive, an empty tar, an HTML page
    named .tar); returns the expected (status, error fragment) per key of shard 00000."""
    inp.mkdir()
    members, links, expected = messy_members()
    write_shard(inp / "00000.tar", members, links)
    ordinary = [("g1.jpg", encode(picture(), "JPEG")), ("g1.txt", CAPTION), ("g2.png", encode(picture(), "PNG"))]
    write_shard(inp / "plain", ordinary)
    (inp / "00001.tar.gz").write_bytes(gzip.compress((inp / "plain").read_bytes(), mtime=0))
    (inp / "plain").unlink()
    body = [
        (f"t{i}.{ext}", encode(picture((64, 64)), "BMP") if ext == "bmp" else CAPTION)
        for i in range(4)
        for ext in ("bmp", "txt")
    ]
    write_shard(inp / "00002.tar", body)
    data = (inp / "00002.tar").read_bytes()
    (inp / "00002.tar").write_bytes(data[: int(len(data) * 0.6)])
    write_shard(inp / "00003.tar", [])
    (inp / "00004.tar").write_bytes(b"<html><body>503 Service Unavailable</body></html>\n" * 30)
    return expected


# ---- videos ----


def grey_frames(count: int, size=(64, 48)) -> list[Image.Image]:
    """Frames whose grey level says their index (8 per frame), so a test can tell which frames were sampled."""
    return [Image.new("RGB", size, (8 * i % 256,) * 3) for i in range(count)]


def frame_index(image: Image.Image) -> int:
    """The index ``grey_frames`` painted into a decoded frame (codecs move grey levels by a step or two)."""
    return round(ImageStat.Stat(image.convert("L")).mean[0] / 8)


def clip_bytes(frames: list[Image.Image], fmt="mp4", codec="libx264", fps=12, options=None, times=None, path=None):
    """``frames`` encoded with PyAV, bitexact; ``times`` (seconds, one per frame) gives a variable frame rate.
    With ``path`` the file is written there first (mp4's faststart needs a file it can rewrite)."""
    import av

    target = path or io.BytesIO()
    container_options = {"fflags": "+bitexact", **({"movflags": "+faststart"} if path else {})}
    with av.open(target, "w", format=fmt, options=container_options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = options or {}
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_image(image)
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path).read_bytes() if path else target.getvalue()


def webm_bytes(frames: list[Image.Image]) -> bytes:
    return clip_bytes(frames, "webm", "libvpx-vp9", options={"deadline": "realtime", "cpu-used": "8"})


def audio_only_mp4() -> bytes:
    """An mp4 holding one AAC audio stream of a second of silence, and no video."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for start in range(0, 8000, 1024):
            frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            frame.planes[0].update(bytes(4096))
            frame.sample_rate, frame.pts = 8000, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def no_decodable_frame(data: bytes) -> bytes:
    """An mp4 (index at the end, as muxed) whose packets are all zeros: it opens and demuxes, nothing decodes."""
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4
    return data[:start] + bytes(end - start) + data[end:]


def rotated_mp4(data: bytes, clockwise: int = 90) -> bytes:
    """``data`` with the track's display matrix set to turn it ``clockwise`` degrees, as a phone writes portrait
    video: the pixels stay as stored, the player turns them."""
    a, b, c, d = {90: (0, 1, -1, 0), 180: (-1, 0, 0, -1), 270: (0, -1, 1, 0)}[clockwise]
    at = data.index(b"tkhd") + 4 + 40  # version/flags, times, ids, duration, layer, volume: 40 bytes
    matrix = struct.pack(">9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)
    return data[:at] + matrix + data[at + 36 :]
