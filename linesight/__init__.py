"""linesight: streaming industrial inspection (Kafka -> Ray -> AnomalyGPT-style scoring -> SQL + alerts).

The code is laid out by architecture, one top-level package per stage:

- ``connectors/``: Kafka (frames in, alerts and dead letters out), the embedded Tansu broker, cameras.
- ``model/``: pure torch modules: encoders, memory bank, anomaly maps, calibration, positions, verdicts.
- ``pipeline/``: Ray actors that wire connectors, model and storage into a stream.
- ``storage/``: SQLAlchemy models, migrations and the repository.
- ``training/``: synthetic anomalies, training and evaluation.
- ``linesight/``: settings, the command line, the demo and the benchmark.
"""

__version__ = "0.1.0"
