"""The HDF5 embedding cache: each dataset through a frozen backbone once, features reused after.

- `key`: an entry's key (everything that changes its numbers), whose sha256 names its file;
- `files`: an entry's files and their names (complete, partial, lock, progress notes);
- `options`: how an entry is extracted (`ExtractOptions`) and which entries a fit takes;
- `extract`: `extract`, an entry filled (or reused), resumable, sharded under torchrun;
- `forward`: the fast path: uint8 batches through the backbone, features back asynchronously;
- `writer`: atomic, resumable, shardable writes of one entry;
- `store`: entries listed, inspected, verified, read as numpy, removed;
- `integrity`: checksums and labels stamped at extraction, checked on every read.

Only this package touches HDF5; the probe side receives arrays.
"""
