"""API plumbing shared by the apps: turning service errors into 400 responses."""
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import InvalidInput


def exception_handler(exc, context):
    """Service errors (InvalidInput) become 400 with field errors, like serializer errors."""
    if isinstance(exc, InvalidInput):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)
