"""``capfilt select``: re-select a scored output folder without running a model (DataComp's score once, select
many): a threshold or a pool-wide keep fraction, applied per shard by copying member bytes."""
