"""Tools built on the repository: the chunker and encoding tuner."""
