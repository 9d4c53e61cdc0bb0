"""The ward's own page: hospital staff record updates from a phone browser (server-rendered HTML,
no script). `install` adds it to the web app under /staff."""

import sys

from fastapi import APIRouter, FastAPI

from handlers.staff import admin, pages
from handlers.staff.auth import PageError, Redirect, StaffServices, page_error_response

router = APIRouter(prefix="/staff", include_in_schema=False)
router.include_router(pages.router)
router.include_router(admin.router)


def install(app: FastAPI, services: StaffServices) -> None:
    app.state.staff = services
    app.include_router(router)
    # No body limit of Starlette's: the upload weighs its declared length itself (admin.upload_router).
    app.include_router(admin.upload_router, prefix="/staff", include_in_schema=False, max_body_size=sys.maxsize)
    app.add_exception_handler(PageError, page_error_response)
    app.add_exception_handler(Redirect, page_error_response)
