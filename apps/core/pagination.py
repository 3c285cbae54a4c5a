"""The API's page numbers: exactly what the schema says.

DRF's PageNumberPagination also takes ``?page=`` (empty: page 1), ``?page=last`` and anything
``int()`` reads (`` 2``, ``+2``, ``٢``). Here a page is a whole number from 1 to the last page, written
in ASCII digits; anything else is a 404 with DRF's message ("Invalid page."), as the schema documents.
"""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import NotFound


class PageNumberPagination(pagination.PageNumberPagination):
    last_page_strings = ()

    def get_page_number(self, request, paginator):
        page_number = request.query_params.get(self.page_query_param)
        if page_number is None:
            return 1
        if not (page_number.isascii() and page_number.isdigit()):
            raise NotFound(self.invalid_page_message)
        return page_number

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["description"] = "A page number, from 1 to the last page (past it: 404)."
        return parameters
