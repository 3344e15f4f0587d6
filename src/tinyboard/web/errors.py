"""Errors in ThingsBoard's REST shape: {"status", "message", "errorCode", "timestamp"}."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tinyboard.core.limits import OverLimit
from tinyboard.core.login_limits import LoginThrottled
from tinyboard.core.rpc import DeviceOffline, RpcReplyNotJson, RpcTimeout
from tinyboard.errors import (
    ConflictError,
    NotFoundError,
    PayloadError,
    StoreFullError,
    TinyboardError,
)
from tinyboard.web.tokens import AuthError

# ThingsBoard's errorCode values (ThingsboardErrorCode).
GENERAL, AUTHENTICATION, PERMISSION_DENIED = 2, 10, 20
BAD_REQUEST, ITEM_NOT_FOUND, TOO_MANY_REQUESTS = 31, 32, 33


def error_body(status: int, message: str, code: int = GENERAL) -> dict[str, object]:
    return {
        "status": status,
        "message": message,
        "errorCode": code,
        "timestamp": int(time.time() * 1000),
    }


def error(status: int, message: str, code: int = GENERAL) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


class PayloadTooLarge(TinyboardError):
    """A device message over --max-packet (HTTP 413)."""


class PermissionDenied(TinyboardError):
    """A valid user calling what their authority may not (HTTP 403), in ThingsBoard's
    words."""

    def __init__(self, message: str = "You don't have permission to perform this operation!"):
        super().__init__(message)


_STATUS: tuple[tuple[type[Exception], int, int], ...] = (
    (AuthError, 401, AUTHENTICATION),
    (PermissionDenied, 403, PERMISSION_DENIED),
    (LoginThrottled, 429, TOO_MANY_REQUESTS),
    (OverLimit, 429, TOO_MANY_REQUESTS),
    (PayloadTooLarge, 413, BAD_REQUEST),
    (NotFoundError, 404, ITEM_NOT_FOUND),
    (ConflictError, 409, BAD_REQUEST),
    (PayloadError, 400, BAD_REQUEST),
    # ThingsBoard's RpcV2Controller: 504 for NO_ACTIVE_CONNECTION and for TIMEOUT alike
    # (the deprecated /api/plugins/rpc routes map them themselves, see web/rpc.py).
    (StoreFullError, 503, GENERAL),  # not the request's fault: send it again later
    (DeviceOffline, 504, GENERAL),
    (RpcTimeout, 504, GENERAL),
    (RpcReplyNotJson, 406, GENERAL),  # AbstractRpcController.reply: NOT_ACCEPTABLE
    (TinyboardError, 400, BAD_REQUEST),
)


def install(app: FastAPI) -> None:
    """Map every error to one JSON shape; unexpected ones to 500 without details."""

    @app.exception_handler(TinyboardError)
    async def tinyboard_error(_: Request, exc: Exception) -> JSONResponse:
        for kind, status, code in _STATUS:
            if isinstance(exc, kind):
                response = error(status, str(exc), code)
                if retry_after := getattr(exc, "retry_after", None):
                    response.headers["Retry-After"] = str(retry_after)
                return response
        return error(400, str(exc), BAD_REQUEST)  # pragma: no cover - TinyboardError is last

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return error(400, f"invalid request: {problems}", BAD_REQUEST)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = ITEM_NOT_FOUND if exc.status_code == 404 else GENERAL
        return error(exc.status_code, str(exc.detail), code)
