"""What goes wrong past the caller's input: TF Serving's answers and the gateway's limits.

One error class for both, the serving client's (``modelsync.tfs.ServingError``: an HTTP status,
a message and TF Serving's gRPC code when it said so); here it is the gateway's ``GatewayError``.
"""

from __future__ import annotations

from modelsync.tfs import ServingError as GatewayError

__all__ = ["MLFLOW_CODES", "GatewayError"]

# HTTP status -> MLflow's error_code (mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS; MLflow has
# no code for 413, 415 or 502: those use BAD_REQUEST and INTERNAL_ERROR)
MLFLOW_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "BAD_REQUEST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL_ERROR",
    501: "NOT_IMPLEMENTED",
    502: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
