"""Root pytest configuration: the embedded stack (PostgreSQL + Apache Kafka) is
started once per session by the `stayops_infra.testing` plugin."""

pytest_plugins = ["stayops_infra.testing"]
