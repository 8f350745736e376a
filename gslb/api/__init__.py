"""The HTTP API: status, explain, metrics, admin, and the status page (gslb/api/app.py)."""

from gslb.api.app import Api, token_source
from gslb.api.auth import TokenSource
from gslb.api.errors import ApiError, error_response
from gslb.api.status import endpoint_dict, status_document

__all__ = ["Api", "ApiError", "TokenSource", "endpoint_dict", "error_response", "status_document", "token_source"]
