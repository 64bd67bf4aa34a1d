"""clip-retrieval's embedding files for one shard's kept samples: ``img_emb/``, ``text_emb/`` and ``metadata/``, one
row per kept sample in the order the samples enter the tar, float16 and unit length, as autofaiss and
embedding-reader read them."""

import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from capfilt.pipeline import storage
from capfilt.pipeline.policy import Candidate, Decision
from capfilt.pipeline.shard.sample import Sample
from capfilt.pipeline.shard.writer import ShardWriter
from capfilt.pipeline.stats import Stats

DIMENSION = 16
RANDOM = np.random.default_rng(0)


def unit(vector) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def embedded(key: str, meta: dict | None, chosen: str | None) -> Sample:
    """A sample carrying its normalised image embedding and one per candidate, kept with ``chosen`` (None: dropped),
    as the model stages and the policy leave it."""
    texts = ["a red square", "a blue circle"]
    sample = Sample(
        key=key,
        members={"jpg": b"jpeg bytes", "json": json.dumps(meta).encode()} if meta else {"jpg": b"jpeg bytes"},
        image_ext="jpg",
        media="image",
        meta=meta,
        meta_text=json.dumps(meta) if meta else None,
        synthetic=texts,
        synthetic_scores=[0.9, 0.8],
        synthetic_similarities=[0.3, 0.2],
        image_embedding=unit(RANDOM.normal(size=DIMENSION)),
        text_embeddings={text: unit(RANDOM.normal(size=DIMENSION)) for text in texts},
    )
    if chosen is None:
        sample.drop("below_threshold")
    else:
        candidate = Candidate(chosen, sample.scores_of(chosen)[0], "synthetic")
        sample.status, sample.decision = "kept", Decision(candidate, kept=(candidate,))
    return sample


def tar_keys(path) -> list[str]:
    with tarfile.open(path) as tar:
        return list(dict.fromkeys(member.name.split(".", 1)[0] for member in tar))


def test_one_row_per_kept_sample_in_tar_order_float16_unit_length(tmp_path):
    samples = [
        embedded("zebra", {"url": "https://example.com/z.jpg"}, "a blue circle"),
        embedded("apple", {"url": "https://example.com/a.jpg"}, None),  # dropped: no row
        embedded("mango", {"url": 5}, "a red square"),  # a url that is not text is no url
        embedded("kiwi", None, "a blue circle"),
    ]
    writer = ShardWriter(str(tmp_path), "00007", "best", embeddings=True)
    for sample in samples:
        writer.write(sample)
    writer.commit(Stats(shards=1, input=4), shard="00007")
    image = np.load(tmp_path / "img_emb" / "img_emb_00007.npy")
    text = np.load(tmp_path / "text_emb" / "text_emb_00007.npy")
    metadata = pq.read_table(tmp_path / "metadata" / "metadata_00007.parquet").to_pylist()
    kept = [s for s in samples if s.status == "kept"]
    assert [m["key"] for m in metadata] == tar_keys(tmp_path / "00007.tar") == ["zebra", "mango", "kiwi"]
    assert metadata == [
        {"key": "zebra", "caption": "a blue circle", "url": "https://example.com/z.jpg"},
        {"key": "mango", "caption": "a red square", "url": None},
        {"key": "kiwi", "caption": "a blue circle", "url": None},
    ]
    assert image.dtype == text.dtype == np.float16 and image.shape == text.shape == (3, DIMENSION)
    # Row i is kept sample i's image and its chosen caption's text embedding, unit length within float16's step.
    assert np.allclose(image, [s.image_embedding for s in kept], atol=1e-3)
    assert np.allclose(text, [s.text_embeddings[s.decision.chosen.text] for s in kept], atol=1e-3)
    assert np.allclose(np.linalg.norm(image.astype(np.float32), axis=1), 1, atol=2e-3)
    assert np.allclose(np.linalg.norm(text.astype(np.float32), axis=1), 1, atol=2e-3)


def test_the_files_appear_by_rename_before_the_shards_stats(tmp_path, monkeypatch):
    renamed = []
    rename = FileSystems.rename
    monkeypatch.setattr(FileSystems, "rename", lambda src, dst: renamed.extend(dst) or rename(src, dst))
    writer = ShardWriter(str(tmp_path), "00007", "best", embeddings=True)
    writer.write(embedded("a", {"url": "u"}, "a red square"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and storage.TEMP_DIR not in p.parts]
    writer.commit(Stats(shards=1, input=1), shard="00007")
    names = [path.rsplit("/", 1)[-1] for path in renamed]
    assert names[-1] == "00007_stats.json"  # the stats still mark the shard complete, embeddings included
    assert {"img_emb_00007.npy", "text_emb_00007.npy", "metadata_00007.parquet"} <= set(names[:-1])


def test_a_shard_with_no_kept_sample_gets_no_embedding_files(tmp_path):
    # embedding-reader fails to pair an empty .npy with its metadata: no file is the empty shard.
    writer = ShardWriter(str(tmp_path), "00007", "best", embeddings=True)
    writer.write(embedded("a", {"url": "u"}, None))
    writer.commit(Stats(shards=1, input=1), shard="00007")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "00007.parquet",
        "00007.tar",
        "00007_stats.json",
        storage.TEMP_DIR,
    ]
