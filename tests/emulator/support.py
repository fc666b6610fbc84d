"""Test helpers for the emulator: spec validation, a tiny cookie-keeping browser, token checks."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import yaml
from jsonschema import Draft202012Validator
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
FAPI_SPEC = SPECS / "clerk-fapi-2026-05-12.yml"
BAPI_SPEC = SPECS / "clerk-bapi-2026-05-12.yml"
CLIENT_SCHEMA = SPECS / "client.schema.json"

SESSION_CLAIMS = ("sid", "sub", "iss", "azp", "iat", "nbf", "exp", "v", "fva", "sts")


class OpenAPISpec:
    """One OpenAPI 3.0 document; validates response bodies of operations and named component schemas."""

    def __init__(self, path: Path) -> None:
        self.uri = f"urn:spec:{path.name}"
        with path.open() as handle:
            self.document: dict[str, Any] = _nullable_compositions(yaml.load(handle, Loader=yaml.CSafeLoader))
        resource = Resource.from_contents(self.document, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(self.uri, resource)

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def response_schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        operation = self.document["paths"][path][method.lower()]
        response = self._resolve(operation["responses"][str(status)])
        return response["content"]["application/json"]["schema"]  # type: ignore[no-any-return]

    def validate(self, schema: dict[str, Any], instance: Any) -> None:
        wrapped = {"allOf": [_rebase(schema, self.uri)]}
        OAS30Validator(wrapped, registry=self.registry).validate(instance)

    def validate_response(self, path: str, method: str, response: httpx.Response) -> Any:
        body = response.json()
        self.validate(self.response_schema(path, method, response.status_code), body)
        return body

    def validate_component(self, name: str, instance: Any) -> None:
        self.validate({"$ref": f"#/components/schemas/{name}"}, instance)


def _nullable_compositions(node: Any) -> Any:
    """`nullable: true` means "null or that" also next to `allOf`/`oneOf`/`anyOf` and `enum`.

    A strict OpenAPI 3.0 validator checks composed schemas and enums against `null` too and fails (the
    3.0.3 clarification), while Clerk's API does send null there; such schemas are rewritten to
    `anyOf: [null, <schema>]`, and null is added to nullable enums.
    """
    if isinstance(node, list):
        return [_nullable_compositions(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_compositions(value) for key, value in node.items()}
    if node.get("nullable") is True and any(key in node for key in ("allOf", "oneOf", "anyOf")):
        rest = {key: value for key, value in node.items() if key != "nullable"}
        return {"anyOf": [{"enum": [None]}, rest]}
    if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


def _rebase(node: Any, uri: str) -> Any:
    """Make document-local `$ref`s absolute so a schema lifted out of the document still resolves."""
    if isinstance(node, dict):
        return {
            key: (f"{uri}{value}" if key == "$ref" and value.startswith("#") else _rebase(value, uri))
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebase(item, uri) for item in node]
    return node


@cache
def fapi_spec() -> OpenAPISpec:
    return OpenAPISpec(FAPI_SPEC)


@cache
def bapi_spec() -> OpenAPISpec:
    return OpenAPISpec(BAPI_SPEC)


@cache
def client_schema_validator() -> Draft202012Validator:
    """`client.schema.json` says draft 2020-12 but marks nulls OpenAPI-style (`nullable`), and requires
    `sign_up_id` (always null) — so `nullable` is honoured by rewriting `type: X` to `[X, "null"]`."""
    schema = _json_schema_nullable(json.loads(CLIENT_SCHEMA.read_text()))
    return Draft202012Validator(schema)


def _json_schema_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_json_schema_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _json_schema_nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


# -- cookies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetCookie:
    name: str
    value: str
    attributes: dict[str, str]

    @classmethod
    def parse(cls, header: str) -> SetCookie:
        first, *rest = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        attributes = {}
        for part in rest:
            key, _, attr_value = part.partition("=")
            attributes[key.lower()] = attr_value
        return cls(name, value, attributes)

    @property
    def clears(self) -> bool:
        return self.attributes.get("max-age") == "0"


def set_cookies(response: httpx.Response) -> dict[str, SetCookie]:
    return {c.name: c for c in map(SetCookie.parse, response.headers.get_list("set-cookie"))}


@dataclass
class Browser:
    """Keeps cookies per host name (ignoring ports, like browsers do not) and never follows redirects.

    Requests go to the real loopback URL; `host` names the virtual host (sent as `Host`), so one
    emulator port can play `clerk.primary.test` and `clerk.sat.test` with separate cookie jars.
    """

    http: httpx.Client
    jars: dict[str, dict[str, str]] = field(default_factory=dict)

    def request(self, method: str, url: str, *, host: str | None = None, **kwargs: Any) -> httpx.Response:
        parts = urlsplit(url)
        jar_key = host or parts.netloc
        headers = dict(kwargs.pop("headers", {}) or {})
        if host:
            headers["Host"] = host
        jar = self.jars.setdefault(jar_key, {})
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        response = self.http.request(method, url, headers=headers, follow_redirects=False, **kwargs)
        for cookie in set_cookies(response).values():
            if cookie.clears:
                jar.pop(cookie.name, None)
            else:
                jar[cookie.name] = cookie.value
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


# -- URLs and tokens ----------------------------------------------------------------------------


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def verify_with_jwks(token: str, jwks: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Verify an RS256 token with PyJWT against a JWKS document, picking the key by `kid`."""
    kid = jwt.get_unverified_header(token)["kid"]
    key_set = jwt.PyJWKSet.from_dict(jwks)
    key = next(k for k in key_set.keys if k.key_id == kid)
    checks: Any = {"verify_aud": False, **options}
    return jwt.decode(token, key.key, algorithms=["RS256"], options=checks)


def unpack_org_permissions(claims: dict[str, Any]) -> list[str]:
    """Decode v2 org permissions as PROTOCOL.md §7.2 describes (independent of the emulator's encoder)."""
    org = claims["o"]
    features = [entry.strip() for entry in claims.get("fea", "").split(",") if entry.strip()]
    org_features = [f.split(":", 1)[1] for f in features if f.split(":", 1)[0] in ("o", "ou", "uo")]
    actions = [a.strip() for a in org.get("per", "").split(",")]
    masks = [m.strip() for m in org.get("fpm", "").split(",")]
    permissions = []
    for index, feature in enumerate(org_features):
        mask = int(masks[index]) if index < len(masks) and masks[index].isdigit() else 0
        permissions += [f"org:{feature}:{action}" for bit, action in enumerate(actions) if mask >> bit & 1]
    return permissions


def b64decode_unpadded(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
