"""The decision log: one parquet row per input sample, kept or dropped, with the columns the README documents."""

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq

from capfilt.pipeline.policy import Candidate, Decision
from capfilt.pipeline.shard.rows import ROW_SCHEMA, rows_table, sample_row
from capfilt.pipeline.shard.sample import Sample


def scored(key: str, **fields) -> Sample:
    """A sample as it leaves the model stages: web caption and two synthetic ones, each with its ITM score."""
    values = dict(
        members={"JPG": b"jpeg bytes", "txt": b"IMG_2031.JPG", "json": b'{"url": "u"}', "cls": b"7"},
        image_ext="JPG",
        sha256=hashlib.sha256(b"jpeg bytes").hexdigest(),
        media="image",
        frame_count=1,
        web_text="IMG_2031.JPG",
        web_score=0.01,
        meta={"url": "u"},
        meta_text='{"url": "u"}',
        synthetic=["a red circle", "a blue square"],
        synthetic_scores=[0.97, 0.4],
    )
    return Sample(key=key, **{**values, **fields})


def kept(sample: Sample, *texts: str) -> Sample:
    """``sample`` kept with ``texts`` (the first chosen), as the policy decides it."""
    candidates = [Candidate(t, sample.scores_of(t)[0], "web" if t == sample.web_text else "synthetic") for t in texts]
    sample.status, sample.decision = "kept", Decision(candidates[0], kept=tuple(candidates))
    return sample


def parquet_rows(samples: list[Sample]) -> list[dict]:
    """The rows as a reader of the parquet file gets them."""
    buffer = io.BytesIO()
    pq.write_table(rows_table([sample_row(s) for s in samples]), buffer)
    return pq.read_table(io.BytesIO(buffer.getvalue())).to_pylist()


def test_a_kept_sample_records_its_choice_every_candidate_and_what_it_held():
    sample = kept(scored("a", notes=["member_too_large: a.npy (10000 bytes)"]), "a red circle")
    (row,) = parquet_rows([sample])
    assert row == {
        "key": "a",
        "status": "kept",
        "error": "member_too_large: a.npy (10000 bytes)",  # what went wrong, also for a kept sample
        "caption": "a red circle",
        "source": "synthetic",
        "score": 0.97,
        "web_text": "IMG_2031.JPG",
        "web_score": 0.01,
        "synthetic_texts": ["a red circle", "a blue square"],
        "synthetic_scores": [0.97, 0.4],
        "similarity": None,
        "web_similarity": None,
        "synthetic_similarities": None,  # null, not empty, when no similarity model ran
        "kept_texts": ["a red circle"],
        "image_ext": "JPG",
        "members": ["JPG", "txt", "json", "cls"],  # every member read, in the tar's order
        "json": '{"url": "u"}',
        "media": "image",
        "frames": 1,
        "duration": None,
        "sha256": hashlib.sha256(b"jpeg bytes").hexdigest(),  # the media member's, as img2dataset records it
        "duplicate_of": None,
    }


def test_the_chosen_captions_score_and_similarity_are_its_own_whichever_it_is():
    web = scored("w", web_similarity=0.3, synthetic_similarities=[0.2, 0.1])
    web.web_score = 0.99
    all_kept = scored("s", web_similarity=0.3, synthetic_similarities=[0.2, 0.1])
    rows = parquet_rows([kept(web, "IMG_2031.JPG"), kept(all_kept, "a blue square", "a red circle", "IMG_2031.JPG")])
    assert [(r["caption"], r["source"], r["score"], r["similarity"]) for r in rows] == [
        ("IMG_2031.JPG", "web", 0.99, 0.3),
        ("a blue square", "synthetic", 0.4, 0.1),
    ]
    assert rows[1]["kept_texts"] == ["a blue square", "a red circle", "IMG_2031.JPG"]  # policy all: every one kept
    assert rows[1]["synthetic_similarities"] == [0.2, 0.1]


def test_a_dropped_sample_has_its_row_with_the_reason_and_no_choice():
    below = scored("b", notes=["no_txt"])
    below.drop("below_threshold", "")
    broken = Sample(key="c", members={"jpg": b"<html>", "txt": b"a caption"}, image_ext="jpg", media="image")
    broken.drop("undecodable_image", "cannot identify image file")
    rows = parquet_rows([below, broken])
    assert [r["key"] for r in rows] == ["b", "c"]
    for row in rows:
        assert (row["caption"], row["source"], row["score"], row["similarity"], row["kept_texts"]) == (
            None,
            None,
            None,
            None,
            [],
        )
    assert (rows[0]["status"], rows[0]["error"]) == ("below_threshold", "no_txt")
    assert rows[0]["synthetic_scores"] == [0.97, 0.4] and rows[0]["web_score"] == 0.01  # scored, then dropped
    assert (rows[1]["status"], rows[1]["error"]) == ("undecodable_image", "cannot identify image file")
    assert rows[1]["members"] == ["jpg", "txt"] and rows[1]["synthetic_texts"] == [] and rows[1]["frames"] is None


def test_a_duplicate_names_the_copy_kept_in_its_place():
    copy = scored("d", duplicate_of="00003/k")
    copy.drop("duplicate", "")
    (row,) = parquet_rows([copy])
    assert (row["status"], row["duplicate_of"], row["caption"]) == ("duplicate", "00003/k", None)
    assert row["sha256"] == hashlib.sha256(b"jpeg bytes").hexdigest()


def test_a_video_row_says_how_many_frames_the_models_saw_and_how_long_the_clip_is():
    clip = kept(scored("v", media="video", frame_count=8, duration=4.5, image_ext="mp4"), "a red circle")
    (row,) = parquet_rows([clip])
    assert (row["media"], row["frames"], row["duration"], row["image_ext"]) == ("video", 8, 4.5, "mp4")


def test_the_table_has_the_same_typed_columns_with_or_without_rows():
    # A failed shard's parquet has no rows; readers that concatenate shards need every file's schema the same.
    assert rows_table([]).schema == rows_table([sample_row(kept(scored("a"), "a red circle"))]).schema == ROW_SCHEMA
    types = {field.name: field.type for field in ROW_SCHEMA}
    assert types["score"] == types["web_score"] == types["similarity"] == pa.float64()
    assert types["synthetic_scores"] == pa.list_(pa.float64()) and types["frames"] == pa.int32()
