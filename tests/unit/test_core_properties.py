"""Properties of the whole decision (PROTOCOL.md §2-§3, §7) for arbitrary requests:

* `decide` returns an `AuthState` or raises a `ClerkProtocolError` (the core's own hierarchy), nothing else;
* it is signed-in only with a token signed by the test key, and then that token is the state's token.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clerk.decide import AuthState, decide
from gateway.clerk.errors import ClerkProtocolError
from gateway.clerk.options import OrganizationSyncOptions
from gateway.clerk.request import RequestView
from tests.support.clerk import (
    IAT,
    KID,
    NOW,
    PK_LIVE,
    PK_TEST,
    SUFFIX_LIVE,
    SUFFIX_TEST,
    Backend,
    options,
    private_key,
)
from tests.support.forge import signed_raw

PROPERTY = settings(
    max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
B64_TEXT = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.%", max_size=60)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
CLAIM_NAMES = st.sampled_from(["sub", "exp", "nbf", "iat", "iss", "azp", "sid", "sts", "v", "o", "fea", "cat",
                               "typ", "alg", "kid", "aud", "org_id", "org_permissions", "handshake"])
JSON_OBJECTS = st.dictionaries(st.one_of(CLAIM_NAMES, st.text(max_size=6)), JSON_VALUES, max_size=6)
# Number literals JavaScript's JSON.parse accepts, including ones Python turns into inf or big floats.
NUMBER_LITERALS = st.sampled_from(["1e400", "-1e400", "1e308", "1e21", "0.5", "-0", "1666648250.999",
                                   "99999999999999999999999", "4e-400", str(IAT), str(IAT + 6), str(IAT - 5)])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@st.composite
def unsigned_tokens(draw: st.DrawFn) -> str:
    header = draw(st.one_of(JSON_OBJECTS, st.just({"alg": "RS256", "kid": KID, "typ": "JWT"})))
    payload = draw(JSON_OBJECTS)
    segments = [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), draw(B64_TEXT)]
    if draw(st.booleans()):
        index = draw(st.integers(0, 2))
        segments[index] = draw(B64_TEXT)
    count = draw(st.sampled_from([3, 3, 3, 2, 4]))
    return ".".join(segments[:count] + [draw(B64_TEXT)] * (count - 3))


@st.composite
def signed_tokens(draw: st.DrawFn) -> str:
    """Tokens really signed by the test key, with arbitrary (often hostile) claims."""
    base: dict[str, Any] = {"sub": "user_1", "iss": "https://clerk.inspired.puma-74.lcl.dev", "sid": "sess_1",
                            "exp": IAT + 60, "iat": IAT, "nbf": IAT - 10}
    base.update(draw(JSON_OBJECTS))
    text = json.dumps(base)
    for name in draw(st.lists(st.sampled_from(["exp", "nbf", "iat"]), max_size=2, unique=True)):
        text = text[:-1] + f', "{name}": {draw(NUMBER_LITERALS)}}}'
    header = {"alg": "RS256", "kid": KID, "typ": "JWT", **draw(st.dictionaries(
        st.sampled_from(["cat", "typ"]), st.sampled_from(["cl_B7d4PD111AAA", "cl_B7d4PD222AAA", "JWT", None]),
        max_size=1))}
    return signed_raw(header, text)


TOKENS = st.one_of(unsigned_tokens(), B64_TEXT, HEADER_TEXT)


@st.composite
def requests(draw: st.DrawFn, token_strategy: Any) -> tuple[str, str, list[tuple[str, str]], list[str]]:
    tokens: list[str] = []

    def token() -> str:
        value = draw(token_strategy)
        tokens.append(value)
        return value

    names = ["__session", f"__session_{SUFFIX_TEST}", f"__session_{SUFFIX_LIVE}", "__client_uat",
             f"__client_uat_{SUFFIX_TEST}", f"__client_uat_{SUFFIX_LIVE}", "__clerk_db_jwt", "__refresh",
             f"__refresh_{SUFFIX_TEST}", f"__refresh_{SUFFIX_LIVE}", "__clerk_redirect_count", "__clerk_handshake",
             "__clerk_handshake_nonce"]
    cookie_parts: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.sampled_from(names), HEADER_TEXT))
        value = token() if name.startswith("__session") or draw(st.booleans()) else draw(
            st.one_of(st.sampled_from(["0", "1", "3", str(IAT - 10), str(IAT + 10), "", " 3 ", "0x3", "%zz"]),
                      HEADER_TEXT))
        cookie_parts.append(f"{name}={value}" if draw(st.integers(0, 9)) else name)
    headers: list[tuple[str, str]] = []
    if cookie_parts:
        headers.append(("cookie", "; ".join(cookie_parts)))
    authorization = draw(st.sampled_from([None, None, "bearer", "bearer", "bare", "other", "text"]))
    if authorization == "bearer":
        headers.append(("authorization", f"Bearer {token()}"))
    elif authorization == "bare":
        headers.append(("authorization", token()))
    elif authorization == "other":
        headers.append(("authorization", f"Basic {draw(HEADER_TEXT)}"))
    elif authorization == "text":
        headers.append(("authorization", draw(HEADER_TEXT)))
    for name, values in (
        ("sec-fetch-dest", ["document", "iframe", "empty", "", "Document"]),
        ("accept", ["text/html", "text/html,application/xhtml+xml", "TEXT/HTML", "*/*"]),
        ("referer", ["https://satellite.com/x", "https://example.com/p", "not a url", "https://[::1]:99999/",
                     "https://clerk.inspired.puma-74.lcl.dev/", "http://example.com"]),
        ("host", ["example.com", "example.com:8080", "[::1]", "bad host", "exa[mple", ""]),
        ("x-forwarded-host", ["a.example,b.example", " spaced.example", "[", "host:99999"]),
        ("x-forwarded-proto", ["https", "http,https", "ftp", "", "ht tp"]),
        ("origin", ["https://example.com", "null"]),
    ):
        if draw(st.booleans()):
            headers.append((name, draw(st.one_of(st.sampled_from(values), HEADER_TEXT))))
    params = ["__clerk_db_jwt", "__clerk_synced", "__clerk_redirect_url", "__clerk_handshake",
              "__clerk_handshake_nonce", "__dev_session", "__clerk_help", "redirect_url", "q"]
    query_parts = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.one_of(st.sampled_from(params), HEADER_TEXT.map(lambda s: s.replace("&", ""))))
        value = draw(st.one_of(st.sampled_from(["true", "false", "http://localhost:3000/x?a=b", "/relative",
                                                "%E0%A4%A", "http://[::1", "a b"]), HEADER_TEXT))
        query_parts.append(f"{name}={value}")
    path = draw(st.sampled_from(["/", "/path", "/orgs/acme", "/orgs/id/org_1", "/me", "/a%20b", "//x"])) + draw(
        st.text("abc/%.-_~", max_size=6))
    url = "http://clerk.com" + path + ("?" + "&".join(query_parts) if query_parts else "")
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "get"]))
    return method, url, headers, tokens


OPTION_SETS = [
    options(PK_TEST),
    options(PK_LIVE),
    options(PK_TEST, is_satellite=True, domain="sat.example", sign_in_url="https://primary.dev/sign-in",
            satellite_auto_sync=True),
    options(PK_LIVE, is_satellite=True, domain="sat.example"),
    options(PK_LIVE, proxy_url="/__clerk", authorized_parties=("https://example.com",),
            organization_sync=OrganizationSyncOptions(("/orgs/:slug", "/orgs/id/:id"), ("/me",))),
]


def _signed_by_test_key(token: str) -> bool:
    header, payload, signature = token.split(".")
    try:
        private_key().public_key().verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
                                          f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _decide(method: str, url: str, headers: list[tuple[str, str]], option_index: int) -> AuthState | None:
    try:
        view = RequestView.build(method, url, headers)
        return decide(view, OPTION_SETS[option_index], Backend().keys, NOW, Backend())
    except ClerkProtocolError:
        return None


@PROPERTY
@given(requests(TOKENS), st.integers(0, len(OPTION_SETS) - 1))
def test_decide_returns_a_state_or_raises_only_protocol_errors(request: Any, option_index: int) -> None:
    method, url, headers, _ = request
    state = _decide(method, url, headers, option_index)
    assert state is None or isinstance(state, AuthState)


@PROPERTY
@given(requests(TOKENS), st.integers(0, len(OPTION_SETS) - 1))
def test_never_signed_in_without_a_token_signed_by_the_test_key(request: Any, option_index: int) -> None:
    method, url, headers, _ = request
    state = _decide(method, url, headers, option_index)
    assert state is None or state.status != "signed-in"


@PROPERTY
@given(requests(st.one_of(signed_tokens(), signed_tokens(), TOKENS)), st.integers(0, len(OPTION_SETS) - 1))
def test_signed_in_only_with_a_carried_token_signed_by_the_test_key(request: Any, option_index: int) -> None:
    # Also the crash property for validly signed tokens with hostile claims: `_decide` lets anything that is
    # not a ClerkProtocolError through.
    method, url, headers, tokens = request
    state = _decide(method, url, headers, option_index)
    if state is not None and state.status == "signed-in":
        assert state.token in tokens, "signed-in with a token the request did not carry"
        assert state.token is not None and _signed_by_test_key(state.token)
        assert state.header("x-clerk-auth-status") is None
