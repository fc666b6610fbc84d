"""`gateway emulator`: run the local Clerk Frontend + Backend API emulator until interrupted.

Two ports: FAPI (`--fapi-port`, default 4500) and BAPI (`--bapi-port`, default 4501). SIGUSR1
rotates the signing key (the old key stays in the JWKS for `--rotation-grace` seconds), as does
`POST /v1/__emulator/rotate_keys` on BAPI. `--webhook URL` (repeatable) sends Clerk's webhooks there,
signed with `--webhook-secret` (default: a random one, printed). The banner prints a `curl` line that mints an API key
(`POST /v1/api_keys`). Heavy imports happen in `run` so `gateway --help` is cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--fapi-port", type=int, default=4500, help="Frontend API port (0 = any free port)")
    parser.add_argument("--bapi-port", type=int, default=4501, help="Backend API port (0 = any free port)")
    parser.add_argument(
        "--instance", choices=("development", "production"), default="development", help="instance type"
    )
    parser.add_argument(
        "--fapi-host",
        default="clerk.localhost:{port}",
        help="public Frontend API host encoded in the publishable key; '{port}' = the FAPI port",
    )
    parser.add_argument("--public-url", help="FAPI base URL to advertise (default http://<fapi-host>)")
    parser.add_argument("--secret-key", help="secret key to accept (default: random sk_test_/sk_live_)")
    parser.add_argument("--cookie-domain", help="parent domain for __client_uat and production handshake cookies")
    parser.add_argument("--token-lifetime", type=int, default=60, help="session token lifetime in seconds")
    parser.add_argument("--rotation-grace", type=int, default=300, help="seconds a rotated-out key stays published")
    parser.add_argument("--sign-in-url", help="sign-in URL to advertise (default <public-url>/sign-in)")
    parser.add_argument("--satellite-domain", action="append", default=[], help="a satellite domain (repeatable)")
    parser.add_argument(
        "--nonce-in-query",
        action="store_true",
        help="production: send the handshake nonce in the redirect query instead of a cookie",
    )
    parser.add_argument(
        "--webhook", action="append", default=[], metavar="URL",
        help="send Clerk's webhooks (session revoked/ended/removed, user deleted) to URL (repeatable), e.g. "
        "http://127.0.0.1:8080/__gateway/webhooks/clerk",
    )  # fmt: skip
    parser.add_argument(
        "--webhook-secret", metavar="whsec_...", help="the webhooks' signing secret (default: a random one, printed)"
    )
    parser.add_argument("--seed", type=Path, help="seed TOML file (default: two users, one organization)")
    parser.add_argument("--key-file", type=Path, help="PEM RSA private key to sign with (default: generate)")


def mint_api_key_command(bapi_url: str, secret_key: str, subject: str) -> str:
    """One shell line that creates an API key for `subject` at this emulator (`POST /v1/api_keys`)."""
    body = f'{{"name":"dev-key","subject":"{subject}"}}'
    return (
        f"curl -s -X POST -H 'Authorization: Bearer {secret_key}' -H 'Content-Type: application/json' "
        f"-d '{body}' {bapi_url}/v1/api_keys"
    )


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import sys
    import threading

    from gateway.emulator.seed import SeedError, load_seed
    from gateway.emulator.server import EmulatorServer, EmulatorStartError
    from gateway.emulator.signing import load_private_key

    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO line per request is noise here
    try:
        seed = load_seed(args.seed)
        key = load_private_key(args.key_file) if args.key_file else None
        server = EmulatorServer(
            host=args.host,
            fapi_port=args.fapi_port,
            bapi_port=args.bapi_port,
            production=args.instance == "production",
            fapi_host=args.fapi_host,
            public_url=args.public_url,
            secret_key=args.secret_key,
            cookie_domain=args.cookie_domain,
            token_lifetime=args.token_lifetime,
            rotation_grace=args.rotation_grace,
            sign_in_url=args.sign_in_url,
            satellite_domains=tuple(args.satellite_domain),
            nonce_in_query=args.nonce_in_query,
            webhook_urls=tuple(args.webhook),
            webhook_secret=args.webhook_secret,
            seed=seed,
            signing_key=key,
        ).start()
    except (SeedError, EmulatorStartError, OSError, ValueError) as error:
        print(f"gateway emulator: {error}", file=sys.stderr)
        return 2

    config = server.config
    print(f"Clerk emulator ({config.instance_type} instance)")
    print(f"  Frontend API : {config.public_url}  (listening on {server.fapi_url})")
    print(f"  Backend API  : {server.bapi_url}/v1")
    print(f"  Sign-in URL  : {config.hosted_sign_in_url}")
    print(f"  JWKS         : {server.bapi_url}/v1/jwks  and  {config.public_url}/.well-known/jwks.json")
    print(f"  Cookie suffix: {config.cookie_suffix}")
    print("Environment for the gateway:")
    print(f"  CLERK_PUBLISHABLE_KEY={config.publishable_key}")
    print(f"  CLERK_SECRET_KEY={config.secret_key}")
    print(f"  CLERK_API_URL={server.bapi_url}")
    print(f"  CLERK_FAPI_URL={config.public_url}")
    print(f"  CLERK_SIGN_IN_URL={config.hosted_sign_in_url}")
    print(f"  CLERK_WEBHOOK_SIGNING_SECRET={server.webhooks.secret}")
    endpoints = ", ".join(server.webhooks.urls) or "none yet (--webhook URL, or POST /v1/__emulator/webhooks)"
    print(f"Webhooks to: {endpoints}")
    print("Users: " + ", ".join(user.email for user in seed.users) + " (passwords in the seed file)")
    first_user = seed.users[0].id if seed.users else "user_alice"
    print("Mint an API key (prints its `secret`, for `Authorization: Bearer ak_…`):")
    print(f"  {mint_api_key_command(server.bapi_url, config.secret_key, first_user)}")
    print("Ctrl+C stops; SIGUSR1 or POST /v1/__emulator/rotate_keys rotates the signing key.", flush=True)

    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda *_: print(f"rotated signing key: {server.rotate_keys()}", flush=True))
    while not stopping.wait(3600):
        pass
    server.stop()
    return 0
