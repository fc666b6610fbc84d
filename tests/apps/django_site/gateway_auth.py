"""Django users from the gateway's `remote-user` headers: `Remote-User` (the e-mail), `Remote-Groups`.

The gateway removes every `Remote-*` header a client sends (in `-` and `_` spellings) before adding its
own, so these can be trusted only when the gateway is the only way to reach the app.
"""

from urllib.parse import unquote

from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware

ADMIN_GROUP = "org:admin"  # the organization role, as Clerk's token spells it


def is_org_admin(request):
    groups = request.META.get("HTTP_REMOTE_GROUPS", "")
    return ADMIN_GROUP in (group.strip() for group in groups.split(","))


def sync_admin(request, user):
    """Staff (and superuser) exactly while the gateway says the user is an organization admin."""
    admin = is_org_admin(request)
    if user.is_staff != admin or user.is_superuser != admin:
        user.is_staff = user.is_superuser = admin
        user.save(update_fields=["is_staff", "is_superuser"])
    return user


class GatewayRemoteUserMiddleware(RemoteUserMiddleware):
    """Reads the `Remote-User` request header, which Django names `HTTP_REMOTE_USER`."""

    header = "HTTP_REMOTE_USER"
    # Sync only: Django 5.2's async path looks up "HTTP_" + header, the sync one the header as named.
    async_capable = False

    def process_request(self, request):
        super().process_request(request)
        if request.user.is_authenticated:  # the role may change while Django's session lasts
            sync_admin(request, request.user)


class GatewayRemoteUserBackend(RemoteUserBackend):
    """Users keyed by e-mail, created on first visit."""

    def clean_username(self, username):
        return unquote(username)  # the gateway percent-encodes values that are not plain ASCII

    def configure_user(self, request, user, created=True):
        if created:
            user.email = user.get_username()
            user.save(update_fields=["email"])
        return sync_admin(request, user)
