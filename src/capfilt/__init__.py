"""capfilt: BLIP CapFilt as an Apache Beam pipeline over WebDataset shards.

The Beam side is ``capfilt.pipeline``, the model wrappers ``capfilt.models``; ``capfilt.demo`` holds what exists
only for the procedural demo world (its shards, its evaluation, the training of the embedded checkpoints).
"""

__version__ = "0.2.0"
