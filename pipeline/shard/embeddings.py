"""clip-retrieval's embedding layout for one shard's kept samples: ``img_emb/img_emb_NAME.npy``,
``text_emb/text_emb_NAME.npy`` (float16, L2-normalised, rows in tar order) and ``metadata/metadata_NAME.parquet``
(``key``, ``caption``, ``url``), so autofaiss and embedding-reader index them as they are."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import storage
from .sample import Sample

FOLDERS = ("img_emb", "text_emb", "metadata")
METADATA_SCHEMA = pa.schema([("key", pa.string()), ("caption", pa.string()), ("url", pa.string())])


def embedding_paths(output_dir: str, name: str) -> dict[str, str]:
    return {
        "img_emb": storage.join(storage.join(output_dir, "img_emb"), f"img_emb_{name}.npy"),
        "text_emb": storage.join(storage.join(output_dir, "text_emb"), f"text_emb_{name}.npy"),
        "metadata": storage.join(storage.join(output_dir, "metadata"), f"metadata_{name}.parquet"),
    }


def npy_bytes(rows: list) -> bytes:
    """``rows`` (at least one) as one float16 ``(n, d)`` .npy file (``np.save``'s bytes depend only on the array)."""
    array = np.stack(rows).astype(np.float16)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


class EmbeddingWriter:
    """Collects the embeddings of a shard's kept samples, in the order they enter the tar, and writes the three
    files on ``commit`` (each atomically; the shard's stats, written after them, still mark it complete). A shard
    with no kept sample gets no files.

    Args:
        output_dir: the run's output folder.
        name: the shard's base name.
    """

    def __init__(self, output_dir: str, name: str):
        self.output_dir = output_dir
        self.paths = embedding_paths(output_dir, name)
        self._images: list = []
        self._texts: list = []
        self._metadata: list[dict] = []

    def add(self, sample: Sample, caption: str) -> None:
        self._images.append(sample.image_embedding)
        self._texts.append(sample.text_embeddings[caption])
        url = (sample.meta or {}).get("url")
        self._metadata.append({"key": sample.key, "caption": caption, "url": url if isinstance(url, str) else None})

    def commit(self) -> None:
        if not self._images:
            # No kept sample, no files: embedding-reader fails to pair an empty .npy with its metadata.
            return
        for folder in FOLDERS:
            storage.make_dir(storage.join(self.output_dir, folder))
        storage.write_bytes(self.paths["img_emb"], npy_bytes(self._images), self.output_dir)
        storage.write_bytes(self.paths["text_emb"], npy_bytes(self._texts), self.output_dir)
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self._metadata, schema=METADATA_SCHEMA), buffer, compression="zstd")
        storage.write_bytes(self.paths["metadata"], buffer.getvalue(), self.output_dir)
