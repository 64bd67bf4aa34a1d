"""Decoding one sample's members: the caption, the json and the picture it carries on, or the reason it is dropped,
recorded on the sample (and from there in its parquet row)."""

import hashlib
import json

import pytest
from PIL import Image

from capfilt.pipeline.config import DecodeConfig, VideoConfig
from capfilt.pipeline.shard.decode import decode_sample
from capfilt.pipeline.shard.sample import Sample
from tests.helpers import (
    broken,
    clip_bytes,
    encode,
    exif_rotated_jpeg,
    frame_index,
    grey_frames,
    picture,
    png_header_only,
    sixteen_bit_png,
)

LIMITS = DecodeConfig()
JPEG = encode(picture(), "JPEG")


def decoded(members: dict, key: str = "k", limits: DecodeConfig = LIMITS) -> Sample:
    return decode_sample(Sample(key=key, members=members), limits)


def test_an_ordinary_sample_carries_its_caption_metadata_and_upright_rgb_picture():
    meta = '{"url": "https://example.com/k.jpg", "width": 48}'
    sample = decoded({"JPG": JPEG, "txt": b"  a red\n\tsquare ", "json": meta.encode()})
    assert sample.live and sample.error == ""
    assert sample.web_text == "a red square"  # whitespace runs collapsed, as one caption line
    assert sample.meta == json.loads(meta) and sample.meta_text == meta  # the json travels as written
    assert (sample.media, sample.image_ext, sample.frame_count) == ("image", "JPG", 1)
    assert sample.sha256 == hashlib.sha256(JPEG).hexdigest()  # the media member's bytes, for exact dedup
    assert sample.image.mode == "RGB" and sample.image.size == (48, 32)
    assert sample.pictures == [sample.image]


@pytest.mark.parametrize(
    ("data", "size", "corner"),
    [
        (exif_rotated_jpeg(), (20, 40), None),  # turned as the camera's orientation tag says
        (encode(Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "PNG"), (8, 8), (255, 255, 255)),  # transparent: white
        (sixteen_bit_png(), (16, 16), None),  # 16-bit grey scaled to 8 bits, not clipped
    ],
    ids=["exif_rotated_jpeg", "transparent_png", "png_16bit"],
)
def test_pictures_reach_the_models_upright_and_rgb(data, size, corner):
    sample = decoded({"png": data})
    assert sample.live and sample.image.mode == "RGB" and sample.image.size == size
    if corner is not None:
        assert sample.image.getpixel((0, 0)) == corner
    if size == (16, 16):
        levels = sorted({sample.image.getpixel((x, y))[0] for x in range(16) for y in range(16)})
        assert len(levels) > 200 and levels[-1] > 240  # 0..63750 in 250 steps: spread over 0..255


@pytest.mark.parametrize(
    ("text", "note"),
    [(None, "no_txt"), (b" \n\t ", "blank_txt"), ("café rouge".encode("latin-1"), "txt_not_utf8")],
    ids=["no_txt", "blank_txt", "txt_not_utf8"],
)
def test_a_caption_that_cannot_be_used_is_a_note_and_the_sample_goes_on(text, note):
    members = {"jpg": JPEG, **({"txt": text} if text is not None else {})}
    sample = decoded(members)
    assert sample.live and sample.web_text is None and sample.image is not None
    assert sample.notes[0].split(":")[0] == note and len(sample.notes) == 1
    if note == "txt_not_utf8":
        assert sample.error == "txt_not_utf8: invalid continuation byte at byte 3"


def test_a_sample_without_json_has_empty_metadata():
    sample = decoded({"jpg": JPEG})
    assert sample.live and sample.meta == {} and sample.meta_text is None


def test_a_sample_without_media_has_no_hash():
    assert decoded({"txt": b"a caption"}).sha256 is None


DAMAGED = [
    ({"txt": b"a red square", "json": b"{}"}, "k", "no_image", "no image member"),
    ({"jpg": JPEG, "json": b"{not json"}, "k", "invalid_json", "json member unreadable"),
    ({"jpg": JPEG, "json": '{"t": "é"}'.encode("latin-1")}, "k", "invalid_json", "json member unreadable"),
    ({"jpg": JPEG, "json": b"[1, 2]"}, "k", "invalid_json", "json member is a list, not an object"),
    ({"jpg": JPEG}, "../k", "unsafe_path", "leaves the archive"),
    ({"jpg": JPEG}, "/abs/k", "unsafe_path", "leaves the archive"),
    # The corpus's damaged pictures: random bytes, empty, an HTML page, a JPEG cut short, a pixel bomb.
    *[({ext: data}, "k", reason, fragment) for ext, data, reason, fragment in broken().values()],
]


@pytest.mark.parametrize(
    ("members", "key", "reason", "detail"),
    DAMAGED,
    ids=[f"{reason}-{i}" for i, (_, _, reason, _) in enumerate(DAMAGED)],
)
def test_a_sample_that_cannot_be_used_is_dropped_with_its_reason(members, key, reason, detail):
    sample = decoded(members, key)
    assert sample.status == reason and detail in sample.detail
    assert sample.image is None and sample.pictures == []  # no pixels kept for a dropped sample


def test_the_pixel_limit_is_read_from_the_header_before_any_pixel_is_decoded():
    # The header claims 1000x1000 while the pixel data is a few bytes: decoding would fail as damage. Refused
    # as too large, the limit was applied from the header alone.
    bomb = png_header_only(1000, 1000)
    assert decoded({"png": bomb}, limits=DecodeConfig(max_pixels=10**7)).status == "undecodable_image"
    sample = decoded({"png": bomb}, limits=DecodeConfig(max_pixels=999_999))
    assert sample.status == "image_too_large" and sample.detail == "1000x1000 is over the 999999 pixel limit"
    assert decoded({"jpg": JPEG}, limits=DecodeConfig(max_pixels=48 * 32)).live  # at the limit is allowed


def test_the_first_image_member_is_taken_and_its_extension_recorded():
    sample = decoded({"txt": b"x", "webp": encode(picture((10, 10)), "WEBP"), "PNG": encode(picture(), "PNG")})
    assert sample.image_ext == "PNG" and sample.image.size == (48, 32)  # jpg, jpeg, png, webp, ... in that order


def test_a_sample_dropped_earlier_passes_through_untouched():
    sample = Sample(key="k", members={"jpg": JPEG, "txt": b"a caption", "json": b"{not json"})
    sample.drop("duplicate_key", "the key appeared earlier")
    assert decode_sample(sample, LIMITS) is sample
    assert (sample.status, sample.error, sample.web_text, sample.meta, sample.image) == (
        "duplicate_key",
        "the key appeared earlier",
        None,
        None,
        None,
    )


def test_a_sample_with_a_video_member_is_a_video_sample_whatever_else_it_holds():
    # video2dataset may put a thumbnail beside the clip: the clip is what the sample is about.
    clip = clip_bytes(grey_frames(12))
    sample = decode_sample(Sample(key="k", members={"jpg": JPEG, "mp4": clip, "txt": b"a clip"}), LIMITS, VideoConfig())
    assert sample.live and (sample.media, sample.image_ext, sample.image) == ("video", "mp4", None)
    assert sample.sha256 == hashlib.sha256(clip).hexdigest()  # the clip's, not the thumbnail's
    assert sample.frame_count == len(sample.frames) == VideoConfig().frames and sample.duration == 1.0
    assert [frame_index(f) for f in sample.pictures] == [0, 2, 3, 5, 6, 8, 9, 11]
    skipped = Sample(key="k", members={"jpg": JPEG}, oversized=["MP4"])  # the reader skipped it for its size
    assert decode_sample(skipped, LIMITS).status == "video_too_large" and skipped.image_ext == "MP4"
