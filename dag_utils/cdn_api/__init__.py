"""Client for the CDN statistics API; `python -m dag_utils.cdn_api --help` runs it."""

from dag_utils.cdn_api.client import (
    NOT_AVAILABLE,
    ApiError,
    AuthError,
    CdnApiClient,
    ClientSettings,
    DomainMinute,
)
from dag_utils.cdn_api.parse import ENDPOINT_METRICS, ENDPOINTS

__all__ = [
    "ENDPOINTS",
    "ENDPOINT_METRICS",
    "NOT_AVAILABLE",
    "ApiError",
    "AuthError",
    "CdnApiClient",
    "ClientSettings",
    "DomainMinute",
]
