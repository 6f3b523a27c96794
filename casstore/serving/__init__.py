"""Serving side: a follower that tracks a ref, hot-swaps the model, and acknowledges it.

``Follower`` needs torch only when it builds tensors; ``status`` reading needs nothing else.
"""

from casstore.serving.acks import FollowerAck, read_acks, wait_for_followers
from casstore.serving.follower import Follower, Served

__all__ = ["Follower", "FollowerAck", "Served", "read_acks", "wait_for_followers"]
