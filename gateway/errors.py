"""What goes wrong past the caller's input: TF Serving's answers and the gateway's limits.

One error class for both, the serving client's (``modelsync.tfs.ServingError``: an HTTP status,
a message and TF Serving's gRPC code when it said so); here it is the gateway's ``GatewayError``.
"""

from __future__ import annotations

from modelsync.tfs import ServingError as GatewayError

__all__ = ["MLFLOW_CODES", "GatewayError"]

# HTTP status of an answer -> the gRPC status code name it stands for, for the gateway's request
# telemetry (gateway.telemetry): google.rpc.Code's own HTTP mapping (google/rpc/code.proto) read
# backwards, so a REST answer lands in the same status class (modelsync.judge: client or server
# error) as the gRPC answer it translates; any other 4xx is the caller's mistake
# (INVALID_ARGUMENT), any other 5xx the server's (UNKNOWN)
HTTP_TO_GRPC = {
    200: "OK",
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def grpc_code(http_status: int) -> str:
    """The gRPC status code name an HTTP answer stands for (HTTP_TO_GRPC)."""
    code = HTTP_TO_GRPC.get(http_status)
    if code is not None:
        return code
    if 200 <= http_status < 300:
        return "OK"
    return "INVALID_ARGUMENT" if 400 <= http_status < 500 else "UNKNOWN"


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
