"""Cache service: Redis (single node or Cluster) with a memory tier that takes over in outages.

See :mod:`workbench.cache.base` for the tiers and what recovery guarantees.
"""

from workbench.cache.aio import AsyncCache
from workbench.cache.base import CacheConfig
from workbench.cache.cache import Cache
from workbench.cache.memory import MemoryTier
from workbench.cache.patterns import ainvalidate_tags, cached, invalidate_prefix, invalidate_tags
from workbench.cache.warming import RefreshAhead, WarmReport, warm

__all__ = [
    "AsyncCache",
    "Cache",
    "CacheConfig",
    "MemoryTier",
    "RefreshAhead",
    "WarmReport",
    "ainvalidate_tags",
    "cached",
    "invalidate_prefix",
    "invalidate_tags",
    "warm",
]
