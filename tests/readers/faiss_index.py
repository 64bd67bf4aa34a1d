"""Run in autofaiss's environment (.venv-faiss): embedding-reader reads capfilt's img_emb/ + metadata/ as
clip-retrieval's parquet_npy layout, autofaiss builds an inner-product index of the images, and every kept
sample's caption embedding queries it. Prints one JSON line of what it saw."""

import json
import os
import sys
import tempfile

import numpy as np
from autofaiss import build_index
from embedding_reader import EmbeddingReader


def main(output: str) -> None:
    reader = EmbeddingReader(
        os.path.join(output, "img_emb"),
        file_format="parquet_npy",
        metadata_folder=os.path.join(output, "metadata"),
        meta_columns=["key", "caption"],
    )
    images, keys, captions = [], [], []
    for embeddings, meta in reader(batch_size=1 << 20, start=0, end=reader.count, show_progress=False):
        images.append(embeddings)
        keys += meta["key"].tolist()
        captions += meta["caption"].tolist()
    images = np.concatenate(images)
    texts = np.concatenate(
        [
            np.load(os.path.join(output, "text_emb", name)).astype(np.float32)
            for name in sorted(os.listdir(os.path.join(output, "text_emb")))
        ]
    )
    folder = tempfile.mkdtemp()
    index, infos = build_index(
        embeddings=os.path.join(output, "img_emb"),
        index_path=os.path.join(folder, "image.index"),
        index_infos_path=os.path.join(folder, "infos.json"),
        metric_type="ip",
        verbose=40,
    )
    scores, nearest = index.search(texts, 1)
    print(
        json.dumps(
            {
                "count": int(reader.count),
                "dimension": int(reader.dimension),
                "keys": keys,
                "captions": captions,
                "index": infos["index_key"],
                "nearest": nearest[:, 0].tolist(),
                "nearest_scores": scores[:, 0].tolist(),
                "brute_force": (texts @ images.T).argmax(1).tolist(),
                "own": (texts * images).sum(1).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
