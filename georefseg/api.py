"""georefseg's Python API in one place: what the CLI, batch mapping and the QGIS plugin share.

Each part lives in a module of its own — the request checks (:mod:`georefseg.request`), the
options (:mod:`georefseg.options`) and the result (:mod:`georefseg.result`), the scheduler
connection (:mod:`georefseg.cluster`), the Segmenter (:mod:`georefseg.segmenter`) — and is
gathered here and on the package (``import georefseg``).
"""

from georefseg.cluster import connect_scheduler
from georefseg.options import THRESHOLD_RANGE, SegmentOptions
from georefseg.request import Request, check_request, validate_expression
from georefseg.result import SegmentResult
from georefseg.segmenter import Segmenter, segment

__all__ = ["THRESHOLD_RANGE", "Request", "SegmentOptions", "SegmentResult", "Segmenter", "check_request",
           "connect_scheduler", "segment", "validate_expression"]
