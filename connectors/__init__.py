"""Kafka in and out, the embedded Tansu broker, and cameras (one module per system, quix-streams style).

- ``tansu``: :class:`EmbeddedBroker`, ``broker_for(settings)``
- ``kafka``: ``make_producer``, ``make_consumer``, ``ensure_topics`` (settings measured on the development host, docs/architecture.md)
- ``schema``: the frame message (``FrameHeaders``, ``frame_message``, ``parse_record`` -> Frame | BadFrame)
- ``source``: ``KafkaFrameSource`` (consumer group, manual commits)
- ``sinks``: ``Sink`` base; ``dead_letter.DeadLetterSink`` and ``alerts.AlertSink`` write to Kafka
- ``camera``: ``CameraPublisher`` and folder / video / synthetic frame sources

Submodules are imported on use so ``import connectors`` stays cheap.
"""
