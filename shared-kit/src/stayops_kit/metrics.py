"""Prometheus metrics of one service, in its own registry (several services can
share a test process without clashing)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.outbox_published = Counter(
            "stayops_outbox_published", "Outbox rows published to Kafka", registry=r
        )
        self.outbox_pending = Gauge(
            "stayops_outbox_pending", "Unsent outbox rows waiting to be published (not parked)",
            registry=r,
        )
        self.outbox_oldest_unsent_age = Gauge(
            "stayops_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent, unparked outbox row (0 when none)", registry=r,
        )
        self.outbox_parked = Gauge(
            "stayops_outbox_parked", "Outbox rows parked after Kafka refused them repeatedly",
            registry=r,
        )
        self.outbox_send_failures = Counter(
            "stayops_outbox_send_failures", "Outbox rows Kafka refused, by error", ["error"],
            registry=r,
        )
        self.producer_restarts = Counter(
            "stayops_producer_restarts", "Kafka producers replaced after a fatal error", registry=r
        )
        self.outbox_lag = Histogram(
            "stayops_outbox_lag_seconds", "From the event's time to its publication", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.relay_errors = Counter("stayops_relay_errors", "Failed relay passes", registry=r)
        self.events_handled = Counter(
            "stayops_events_handled", "Events applied by the inbox consumer", ["type"], registry=r
        )
        self.events_duplicate = Counter(
            "stayops_events_duplicate", "Redelivered events the inbox absorbed", registry=r
        )
        self.events_dead_lettered = Counter(
            "stayops_events_dead_lettered", "Events sent to the dead-letter topic", ["reason"],
            registry=r,
        )
        self.dead_letter_failures = Counter(
            "stayops_dead_letter_failures",
            "Dead-letter sends that failed (the record is retried, its partition waits)", registry=r,
        )
        self.database_unavailable = Counter(
            "stayops_consumer_database_unavailable",
            "Batches put back because the database could not be reached", registry=r,
        )
        self.loop_up = Gauge(
            "stayops_loop_up", "1 while a background loop runs healthily", ["loop"], registry=r
        )
        self.loop_restarts = Gauge(
            "stayops_loop_restarts", "Times a background loop was restarted after a crash", ["loop"],
            registry=r,
        )
        self.http_requests = Counter(
            "stayops_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
