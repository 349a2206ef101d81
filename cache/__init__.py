"""The HDF5 embedding cache: each dataset through a frozen backbone once."""
