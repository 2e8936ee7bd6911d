"""Health probes, as Prometheus names them: ``/-/healthy`` (the process answers) and
``/-/ready`` (the database is open and the server accepts traffic). Never behind auth."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse

from tsdb.server.state import get_state

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get(
    "/-/healthy",
    response_class=PlainTextResponse,
    summary="Liveness probe",
    responses={200: {"content": {"text/plain": {"example": "tsdb is Healthy.\n"}}}},
)
async def healthy() -> PlainTextResponse:
    """200 while the process serves HTTP."""
    return PlainTextResponse("tsdb is Healthy.\n")


@router.get(
    "/-/ready",
    response_class=PlainTextResponse,
    summary="Readiness probe",
    responses={
        200: {"content": {"text/plain": {"example": "tsdb is Ready.\n"}}},
        503: {"content": {"text/plain": {"example": "tsdb is not ready.\n"}}},
    },
)
async def ready(request: Request) -> PlainTextResponse:
    """200 once the database is open (recovery done), 503 while starting or shutting down."""
    state = get_state(request)
    if state.ready and state.db is not None:
        return PlainTextResponse("tsdb is Ready.\n")
    return PlainTextResponse("tsdb is not ready.\n", status_code=503)
