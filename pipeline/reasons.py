"""Every outcome a sample can have, in one place: why a sample was dropped (its parquet ``status``) and the
notes recorded on samples that went on anyway. ``Sample`` refuses any other name, so this list, the gates that
name reasons and the README's table cannot drift apart."""

KEPT = "kept"

DROP_REASONS = {
    "below_threshold": "no candidate reached filter.threshold (policies best, all), or select's --threshold",
    "below_fraction": "outside the pool's best --keep-fraction in capfilt select",
    "duplicate": "capfilt select --dedup: a copy of a sample with a better score (duplicate_of names it)",
    "no_caption": "no usable web caption and no synthetic caption",
    "no_image": "no image or video member, or only a link to one",
    "undecodable_image": "the image bytes do not decode",
    "image_too_large": "over decode.max_pixels, refused from the header before decoding",
    "invalid_json": "the json member is not UTF-8 JSON or not an object",
    "unsafe_path": "the key is absolute or contains '..'",
    "duplicate_key": "the key appeared earlier in the same shard",
    "truncated": "the archive ends inside this sample",
    "no_video_stream": "the video member holds no video stream (audio only, or nothing)",
    "undecodable_video": "the video member does not open as a video container, or no frame of it decodes",
    "video_cut_short": "the video file ends before its header or index says: a packet cut off, or frames short",
    "video_too_large": "over video.max_pixels from the stream header, or the member over video.max_member_bytes",
    "video_too_long": "over video.max_seconds, from the header or the packets",
    "video_decode_timeout": "reading the video took longer than video.decode_seconds",
}

NOTES = {
    "no_txt": "no txt member; the captioner supplies the candidates",
    "blank_txt": "the txt member is blank",
    "txt_not_utf8": "the txt member is not UTF-8",
    "link_member_ignored": "a symlink or hardlink member, never followed or copied",
    "member_too_large": "a member over decode.max_member_bytes, skipped unread",
    "duplicate_member_ignored": "a second member with the same key and extension",
    "text_truncated": "a candidate longer than the filter or similarity model reads, scored on its first tokens",
    "captioning_skipped": "the web caption scored at least captioner.caption_below, so the image was not captioned",
}
