"""The embedded broker: Apache Kafka in KRaft mode on the local JDK, or Tansu without Java."""
