"""The stream's stages: ingest loop and its ports and adapters, inference, sink, verdict and monitor actors,
counters, placement, and the job that starts and supervises them (``job.Pipeline``)."""
