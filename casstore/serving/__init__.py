"""Serving side: a follower that tracks a ref, hot-swaps the model, and acknowledges it.

``Follower`` needs torch only when it builds tensors; ``status`` reading needs nothing else
(the names below are imported on first use, so reading acks never loads the follower).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casstore._lazy import lazy_attributes

if TYPE_CHECKING:
    from casstore.serving.acks import FollowerAck, read_acks, wait_for_followers
    from casstore.serving.follower import Follower, Served

_LAZY = {
    "FollowerAck": "casstore.serving.acks",
    "read_acks": "casstore.serving.acks",
    "wait_for_followers": "casstore.serving.acks",
    "Follower": "casstore.serving.follower",
    "Served": "casstore.serving.follower",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = ["Follower", "FollowerAck", "Served", "read_acks", "wait_for_followers"]
