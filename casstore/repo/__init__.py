"""One store's data: keys, config, manifests, chunks, files, catalog, refs, leases,
versioning, query, compare and the commit path. Internal: use casstore's top-level API."""
