"""Errors of the ``connectors`` package; every message names the offending value (server, topic, file).

>>> issubclass(BrokerError, ConnectorError)
True
"""

from __future__ import annotations

from linesight.errors import InvalidInputError, LinesightError, UnavailableError

__all__ = [
    "ConnectorError",
    "BrokerError",
    "FrameError",
    "ImageHeaderError",
    "DeliveryError",
    "CameraError",
]


class ConnectorError(LinesightError):
    """A Kafka client, broker, camera or message problem; the message names servers/topics/files."""


class BrokerError(ConnectorError, UnavailableError):
    """The embedded Tansu broker could not be found, started or stopped (names the binary and port)."""


class FrameError(ConnectorError, InvalidInputError):
    """A frame could not be encoded or built (names the bad shape, format or header value)."""


class ImageHeaderError(FrameError):
    """An image's PNG/JPEG/BMP header is truncated or corrupt (names what is wrong and where)."""


class DeliveryError(ConnectorError):
    """Records handed to a producer were not delivered (names the topic, how many, and the first error)."""


class CameraError(ConnectorError):
    """A camera source (folder, video, synthetic line) cannot deliver frames (names the file or folder)."""
