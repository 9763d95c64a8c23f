"""Errors of the embedded stack; each message says what to do about it."""

from __future__ import annotations


class StackError(Exception):
    """Something in the embedded stack could not start, stop or be reached."""


class JavaNotFound(StackError):
    """No JDK on PATH (or JAVA_HOME), so Apache Kafka cannot run here."""


class KafkaJarsMissing(StackError):
    """The Kafka jars are not in the cache and Maven could not resolve them."""


class AlreadyRunning(StackError):
    """Another `stayops up` owns this data directory."""
