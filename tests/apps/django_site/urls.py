"""Django's admin, a page that says who Django thinks you are, and a health check for readiness."""

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse({
        "authenticated": user.is_authenticated,
        "username": user.get_username(),
        "email": getattr(user, "email", ""),
        "is_staff": user.is_staff,
    })


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("whoami", whoami),
    path("healthz", healthz),
]
