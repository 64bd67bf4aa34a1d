"""The demo world and everything that exists only for it: procedural shards with ground truth, evaluation
against that truth, and the training of the embedded demo checkpoints. Production code never imports it."""
