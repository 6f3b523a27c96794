"""Operations that move refs or delete: rollout, regression, retention, gc, verify,
transfer. Internal: use casstore's top-level API."""
