"""The output read by the libraries users train and analyse with, not by a reader of our own: webdataset, Hugging
Face `datasets`, open_clip's training loader (in its own environment: it needs torchvision, which has no build
beside the CPU torch of the main one; `make test` creates it), pandas and duckdb on the decision log, and
embedding-reader + autofaiss on the embeddings (also in an environment of their own: autofaiss pins numpy<2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from capfilt.cli import main
from tests.helpers import rows, run, sample_members, write_shard
from tests.pipeline.test_wild import img2dataset_sample

SIZES = ((48, 32), (24, 16))  # the pictures of the img2dataset-style and of the plain samples
READERS = Path(__file__).resolve().parent.parent / "readers"
OPENCLIP_PYTHON = os.environ.get("CAPFILT_OPENCLIP_PYTHON") or str(
    Path(__file__).resolve().parents[2] / ".venv-openclip" / "bin" / "python"
)
FAISS_PYTHON = os.environ.get("CAPFILT_FAISS_PYTHON") or str(
    Path(__file__).resolve().parents[2] / ".venv-faiss" / "bin" / "python"
)


@pytest.fixture(scope="module")
def output(tiny_models, tmp_path_factory) -> Path:
    """A run whose first shard failed (an empty output tar), then img2dataset-style samples of three image formats
    with extra members, then ordinary samples, one dropped for having no image."""
    root = tmp_path_factory.mktemp("readers")
    inp = root / "in"
    inp.mkdir()
    (inp / "00000.tar").write_bytes(b"")
    members = [
        m for i, fmt in enumerate(["jpg", "png", "webp", "jpg", "png"]) for m in img2dataset_sample(f"w{i}", fmt, i)
    ]
    write_shard(inp / "00001.tar", members)
    plain = [m for i in range(5) for m in sample_members(f"p{i}", f"a red square {i}")]
    write_shard(inp / "00002.tar", plain + [("p9.txt", b"no image here")])
    assert run(tiny_models, inp, root / "out") == 0
    return root / "out"


def kept(out: Path) -> int:
    return sum(r["status"] == "kept" for r in rows(out))


def test_webdataset_reads_every_kept_sample_with_its_members(output):
    import webdataset as wds

    urls = sorted(str(p) for p in output.glob("*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"))
    assert len(samples) == kept(output) == 10
    for sample in samples:
        image = next(sample[k] for k in ("jpg", "png", "webp") if k in sample)
        assert image.size in SIZES and sample["txt"] and "capfilt" in sample["json"]
        if sample["__key__"].startswith("w"):
            assert {"cls", "npy", "caption", "de.txt"} <= set(sample)


def test_hugging_face_datasets_reads_the_output_with_the_readme_recipe(output, tmp_path):
    # The README's recipe: name every image column (HF infers columns from the first sample and would leave a png
    # sample's image out), and pass only tars that hold samples (HF fails on an empty first tar).
    import datasets

    sizes = json.loads((output / "sizes.json").read_text())
    files = [str(output / name) for name, count in sizes.items() if count]
    image = datasets.Image()
    features = datasets.Features(
        {
            "jpg": image,
            "png": image,
            "webp": image,
            "txt": datasets.Value("string"),
            "__key__": datasets.Value("string"),
            "__url__": datasets.Value("string"),
        }
    )
    dataset = datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", features=features, cache_dir=str(tmp_path)
    )
    assert dataset.num_rows == kept(output)
    for row in dataset:
        images = [row[k] for k in ("jpg", "png", "webp") if row[k] is not None]
        assert len(images) == 1 and images[0].size in SIZES and row["txt"]


def test_pandas_and_duckdb_read_the_decision_log(output):
    import pandas as pd

    frame = pd.concat([pd.read_parquet(p) for p in sorted(output.glob("*.parquet"))])
    assert len(frame) == 11 and (frame["status"] == "kept").sum() == 10
    # duckdb in a process of its own: duckdb 2.0's bindings print a page of "leaked instance" lines at exit.
    query = f"SELECT status, count(*) FROM read_parquet('{output}/*.parquet') GROUP BY status"
    code = f"import duckdb, json; print(json.dumps(dict(duckdb.sql({query!r}).fetchall())))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    counts = json.loads(done.stdout)
    assert counts == {"kept": 10, "no_image": 1}
    report = json.loads((output / "report.json").read_text())["totals"]
    assert counts["kept"] == report["kept"] and counts["no_image"] == report["dropped"]["no_image"]


@pytest.mark.skipif(not os.path.exists(OPENCLIP_PYTHON), reason="no .venv-openclip: `make test` creates it")
def test_open_clip_training_loader_sizes_and_reads_the_output_without_train_num_samples(output):
    urls = "::".join(sorted(str(p) for p in output.glob("*.tar")))
    result = subprocess.run(
        [OPENCLIP_PYTHON, str(READERS / "open_clip_loader.py"), urls],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["num_samples_from_sizes_json"] == kept(output)
    assert seen["images"] == seen["loader_num_samples"] == kept(output) and seen["image_shape"] == [3, 32, 32]


@pytest.mark.skipif(not os.path.exists(FAISS_PYTHON), reason="no .venv-faiss: `make test` creates it")
def test_autofaiss_indexes_the_embeddings_and_each_caption_finds_its_image(tmp_path):
    """The demo world scored by the shipped models with embedded:clip: embedding-reader pairs the files, autofaiss
    indexes the images, and a caption's nearest image is the image it belongs to."""
    inp = tmp_path / "in"
    assert main(["demo-data", "--output", str(inp), "--shards", "2", "--samples-per-shard", "24", "--seed", "5"]) == 0
    (inp / "00002.tar").write_bytes(b"")  # a failed shard: no kept sample, so no embedding files
    out = tmp_path / "out"
    sets = ["filter.policy=score_only", "similarity.model=embedded:clip", "similarity.embeddings=true"]
    argv = ["run", "demo", "--input", str(inp / "*.tar"), "--output", str(out), "--set", "runtime.threads=1"]
    assert main([*argv, *(a for item in sets for a in ("--set", item))]) == 0
    result = subprocess.run([FAISS_PYTHON, str(READERS / "faiss_index.py"), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    table = [r for r in rows(out) if r["status"] == "kept"]
    # embedding-reader pairs img_emb_NAME.npy with metadata_NAME.parquet, rows in tar order.
    assert seen["count"] == len(table) == 48 and seen["keys"] == [r["key"] for r in table]
    assert seen["captions"] == [r["caption"] for r in table]
    # autofaiss's index answers each caption as an exact inner-product search over the image rows would...
    assert seen["index"] == "Flat" and seen["nearest"] == seen["brute_force"]
    # ...each row's image . text is the similarity capfilt recorded, up to float16 rounding...
    assert seen["own"] == pytest.approx([r["similarity"] for r in table], abs=3e-3)
    # ...and a caption finds its own image (47 of 48 when this was written; the demo CLIP's AUC is 0.87).
    found = sum(nearest == i for i, nearest in enumerate(seen["nearest"]))
    assert found >= 0.9 * len(table)
