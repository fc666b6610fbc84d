"""The emulated instance's settings: one frozen value built once at start and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.emulator.instance_keys import cookie_suffix, publishable_key


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything that shapes the emulator's answers.

    `fapi_host` is the public Frontend API host encoded in the publishable key (may carry a port);
    `public_url` is the FAPI base URL the emulator advertises in redirects and sign-in links.
    """

    fapi_host: str
    public_url: str
    secret_key: str
    production: bool = False
    cookie_domain: str | None = None
    token_lifetime: int = 60
    rotation_grace: int = 300
    sign_in_url: str | None = None
    satellite_domains: tuple[str, ...] = ()
    nonce_in_query: bool = False
    webhook_urls: tuple[str, ...] = ()
    """Endpoints sent Clerk's webhooks (more can be added at run time: `POST /v1/__emulator/webhooks`)."""
    webhook_secret: str | None = None
    """The endpoints' signing secret (`whsec_…`); None: a random one (the banner and the state show it)."""
    session_lifetime: int = 7 * 24 * 3600
    application_name: str = "session-gateway emulator"

    @property
    def publishable_key(self) -> str:
        return publishable_key(self.fapi_host, production=self.production)

    @property
    def cookie_suffix(self) -> str:
        return cookie_suffix(self.publishable_key)

    @property
    def instance_type(self) -> str:
        return "production" if self.production else "development"

    @property
    def issuer(self) -> str:
        """Session tokens' `iss`: Clerk issues `https://<frontend-api-host>` whatever the transport."""
        return f"https://{self.fapi_host}"

    @property
    def hosted_sign_in_url(self) -> str:
        return self.sign_in_url or f"{self.public_url.rstrip('/')}/sign-in"

    def satellite_fapi_url(self, domain: str) -> str:
        """A production satellite's FAPI is `clerk.<domain>` (PROTOCOL.md §1.1), on our scheme and port."""
        public = urlsplit(self.public_url)
        port = f":{public.port}" if public.port else ""
        return f"{public.scheme}://clerk.{domain}{port}"

    def satellite_for_host(self, hostname: str) -> str | None:
        """The satellite domain a FAPI host name belongs to, or None for the primary."""
        hostname = hostname.lower()
        for domain in self.satellite_domains:
            domain = domain.lower()
            if hostname in (f"clerk.{domain}", domain) or hostname.endswith(f".{domain}"):
                return domain
        return None
