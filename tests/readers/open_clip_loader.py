"""Run in open_clip's environment (.venv-openclip): open_clip's own WebDataset training loader over capfilt output,
with no --train-num-samples, so the dataset size must come from sizes.json. Prints one JSON line of what it saw."""

import argparse
import json
import sys

import open_clip
from open_clip_train.data import get_dataset_size, get_wds_dataset


def main(urls: str) -> None:
    args = argparse.Namespace(
        train_data=urls,
        train_num_samples=None,
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        seed=0,
        batch_size=1,  # train batches drop a partial last one; one sample per batch sees them all
        workers=0,
        world_size=1,
    )
    preprocess = open_clip.image_transform(32, is_train=True)
    tokenizer = open_clip.get_tokenizer("RN50")  # its BPE vocabulary ships in the package: no download
    data = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)
    images, shape = 0, None
    for image, text in data.dataloader:
        images += image.shape[0]
        shape = list(image.shape[1:])
        assert text.shape == (1, 77)
    print(
        json.dumps(
            {
                "num_samples_from_sizes_json": get_dataset_size(urls)[0],
                "loader_num_samples": data.dataloader.num_samples,
                "images": images,
                "image_shape": shape,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
