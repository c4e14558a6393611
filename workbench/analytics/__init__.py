"""Parameter analytics: execution records in, statistics and recommendations out.

Records are validated and hashed by :mod:`~workbench.analytics.records`, kept by an
:class:`AnalyticsStore` (embedded DuckDB by default, SQLite or PostgreSQL by URL), ingested
in process (:class:`BufferedWriter`), from Redis Streams (:class:`StreamConsumer`) or files
(:func:`ingest_file`), and summarised by :mod:`~workbench.analytics.stats` and the streaming
detectors of :mod:`~workbench.analytics.detectors`.
"""

from workbench.analytics.detectors import (
    BernoulliCusum,
    CusumDetector,
    EwmaDetector,
    cusum_arl,
    cusum_h_for_arl,
    ewma_arl,
)
from workbench.analytics.feedback import export_rewards, to_observations
from workbench.analytics.files import ingest_file
from workbench.analytics.ingest import BufferedWriter, JsonlDeadLetter
from workbench.analytics.records import (
    Rejection,
    Validated,
    canonical_json,
    parameter_hash,
    validate,
)
from workbench.analytics.service import AnalyticsConfig, AnalyticsService
from workbench.analytics.stats import (
    dashboard,
    effectiveness_frame,
    insights,
    recommend,
    success_interval,
    trend,
)
from workbench.analytics.store import AnalyticsStore, Filters, IngestReport, StoreOptions
from workbench.analytics.streams import StreamConsumer, publish
from workbench.analytics.synthetic import GroundTruth, generate_log, write_log

__all__: list[str] = [
    "AnalyticsConfig",
    "AnalyticsService",
    "AnalyticsStore",
    "BernoulliCusum",
    "BufferedWriter",
    "CusumDetector",
    "EwmaDetector",
    "Filters",
    "GroundTruth",
    "IngestReport",
    "JsonlDeadLetter",
    "Rejection",
    "StoreOptions",
    "StreamConsumer",
    "Validated",
    "canonical_json",
    "cusum_arl",
    "cusum_h_for_arl",
    "dashboard",
    "effectiveness_frame",
    "ewma_arl",
    "export_rewards",
    "generate_log",
    "ingest_file",
    "insights",
    "parameter_hash",
    "publish",
    "recommend",
    "success_interval",
    "to_observations",
    "trend",
    "validate",
    "write_log",
]
