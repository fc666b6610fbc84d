"""JSON shapes of Clerk objects, as the FAPI and BAPI specs (2026-05-12) define them.

FAPI and BAPI disagree on several shapes (FAPI's `Client` embeds `sign_in`/`sign_up`, BAPI's lists
`session_ids`), so each object has a FAPI and a BAPI rendering. Timestamps in objects are
milliseconds, as Clerk sends them.
"""

from __future__ import annotations

from typing import Any

from gateway.emulator.config import EmulatorConfig
from gateway.emulator.seed import SeedMembership, SeedOrganization, SeedUser
from gateway.emulator.state import Client, EmulatorState, Session, SignIn

JSON = dict[str, Any]


def ms(seconds: int | float) -> int:
    return int(seconds * 1000)


def _email_id(user: SeedUser) -> str:
    return f"idn_{user.id}"


def _role_name(role: str) -> str:
    return role.removeprefix("org:").replace("_", " ").title()


# -- users -------------------------------------------------------------------------------------


def _user_common(user: SeedUser, created_ms: int) -> JSON:
    return {
        "id": user.id,
        "object": "user",
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "image_url": user.image_url or "",
        "profile_image_url": user.image_url or "",
        "has_image": bool(user.image_url),
        "primary_email_address_id": _email_id(user),
        "primary_phone_number_id": None,
        "primary_web3_wallet_id": None,
        "password_enabled": True,
        "two_factor_enabled": False,
        "totp_enabled": False,
        "backup_code_enabled": False,
        "phone_numbers": [],
        "web3_wallets": [],
        "passkeys": [],
        "external_accounts": [],
        "saml_accounts": [],
        "enterprise_accounts": [],
        "public_metadata": dict(user.public_metadata),
        "unsafe_metadata": {},
        "external_id": None,
        "last_sign_in_at": None,
        "banned": False,
        "locked": False,
        "lockout_expires_in_seconds": None,
        "verification_attempts_remaining": None,
        "created_at": created_ms,
        "updated_at": created_ms,
        "delete_self_enabled": True,
        "create_organization_enabled": True,
        "last_active_at": None,
        "mfa_enabled_at": None,
        "mfa_disabled_at": None,
        "legal_accepted_at": None,
    }


def _email_address(user: SeedUser, created_ms: int) -> JSON:
    return {
        "id": _email_id(user),
        "object": "email_address",
        "email_address": user.email,
        "reserved": False,
        "verification": {"status": "verified", "strategy": "admin", "attempts": None, "expire_at": None},
        "linked_to": [],
        "created_at": created_ms,
        "updated_at": created_ms,
    }


def fapi_user(state: EmulatorState, user: SeedUser, created_ms: int) -> JSON:
    body = _user_common(user, created_ms)
    body["email_addresses"] = [_email_address(user, created_ms)]
    body["organization_memberships"] = [
        fapi_membership(state, membership, created_ms) for membership in state.seed.memberships_of_user(user.id)
    ]
    return body


def bapi_user(user: SeedUser, created_ms: int) -> JSON:
    body = _user_common(user, created_ms)
    email = _email_address(user, created_ms)
    email["verification"] = {**email["verification"], "object": "verification_admin"}
    body["email_addresses"] = [email]
    body["private_metadata"] = {}
    return body


def public_user_data(user: SeedUser) -> JSON:
    return {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "image_url": "",
        "has_image": False,
        "identifier": user.email,
        "user_id": user.id,
        "username": user.username,
    }


# -- organizations -----------------------------------------------------------------------------


def _organization_common(state: EmulatorState, organization: SeedOrganization, created_ms: int) -> JSON:
    return {
        "id": organization.id,
        "object": "organization",
        "name": organization.name,
        "slug": organization.slug,
        "image_url": "",
        "has_image": False,
        "members_count": len(state.seed.memberships_of_organization(organization.id)),
        "pending_invitations_count": 0,
        "max_allowed_memberships": 0,
        "admin_delete_enabled": True,
        "public_metadata": {},
        "created_at": created_ms,
        "updated_at": created_ms,
    }


def bapi_organization(state: EmulatorState, organization: SeedOrganization, created_ms: int) -> JSON:
    return {**_organization_common(state, organization, created_ms), "private_metadata": {}}


def fapi_membership(state: EmulatorState, membership: SeedMembership, created_ms: int) -> JSON:
    organization = state.seed.organization(membership.organization_id)
    assert organization is not None  # the seed parser guarantees referential integrity
    return {
        "id": membership.id,
        "object": "organization_membership",
        "public_metadata": {},
        "role": membership.role,
        "role_name": _role_name(membership.role),
        "permissions": list(membership.permissions),
        "created_at": created_ms,
        "updated_at": created_ms,
        "organization": _organization_common(state, organization, created_ms),
    }


def bapi_membership(state: EmulatorState, membership: SeedMembership, created_ms: int) -> JSON:
    organization = state.seed.organization(membership.organization_id)
    user = state.seed.user(membership.user_id)
    assert organization is not None and user is not None
    return {
        "id": membership.id,
        "object": "organization_membership",
        "role": membership.role,
        "role_name": _role_name(membership.role),
        "permissions": list(membership.permissions),
        "public_metadata": {},
        "private_metadata": {},
        "organization": bapi_organization(state, organization, created_ms),
        "public_user_data": {
            "user_id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "profile_image_url": "",
            "image_url": "",
            "has_image": False,
            "identifier": user.email,
            "username": user.username,
        },
        "created_at": created_ms,
        "updated_at": created_ms,
    }


# -- sessions and clients ----------------------------------------------------------------------


def _session_times(session: Session) -> JSON:
    return {
        "last_active_at": ms(session.last_active_at),
        "expire_at": ms(session.expire_at),
        "abandon_at": ms(session.abandon_at),
        "created_at": ms(session.created_at),
        "updated_at": ms(session.updated_at),
    }


def fapi_session(state: EmulatorState, session: Session, created_ms: int, token: str | None = None) -> JSON:
    user = state.seed.user(session.user_id)
    assert user is not None
    age_minutes = max(0, (state.now() - session.factor_verified_at) // 60)
    return {
        "id": session.id,
        "object": "session",
        "status": session.status,
        **_session_times(session),
        "last_active_token": {"object": "token", "jwt": token} if token else None,
        "actor": None,
        "last_active_organization_id": session.last_active_organization_id,
        "user": fapi_user(state, user, created_ms),
        "public_user_data": public_user_data(user),
        "factor_verification_age": [age_minutes, -1],
        "tasks": None,
    }


def bapi_session(session: Session) -> JSON:
    return {
        "object": "session",
        "id": session.id,
        "user_id": session.user_id,
        "client_id": session.client_id,
        "actor": None,
        "status": session.status,
        "last_active_organization_id": session.last_active_organization_id,
        **_session_times(session),
    }


def fapi_sign_in(sign_in: SignIn) -> JSON:
    return {
        "object": "sign_in_attempt",
        "id": sign_in.id,
        "status": sign_in.status,
        "supported_identifiers": ["email_address", "username"],
        "supported_first_factors": [{"strategy": "password"}] if sign_in.user_id else [],
        "supported_second_factors": None,
        "first_factor_verification": (
            {"status": "verified", "strategy": "password", "attempts": None, "expire_at": None}
            if sign_in.status == "complete"
            else None
        ),
        "second_factor_verification": None,
        "identifier": sign_in.identifier,
        "user_data": None,
        "created_session_id": sign_in.created_session_id,
        "abandon_at": ms(sign_in.abandon_at),
    }


def fapi_client(state: EmulatorState, client: Client | None, created_ms: int) -> JSON | None:
    if client is None:
        return None
    sessions = [state.session(session_id) for session_id in client.session_ids]
    sign_in = state.sign_ins.get(client.sign_in_id) if client.sign_in_id else None
    return {
        "object": "client",
        "id": client.id,
        "sessions": [fapi_session(state, s, created_ms) for s in sessions if s and s.status == "active"],
        "sign_in": fapi_sign_in(sign_in) if sign_in else None,
        "sign_up": None,
        "last_active_session_id": client.last_active_session_id if state.active_session(client) else None,
        "last_authentication_strategy": client.last_authentication_strategy,
        "cookie_expires_at": None,
        "captcha_bypass": False,
        "created_at": ms(client.created_at),
        "updated_at": ms(client.updated_at),
    }


def bapi_client(state: EmulatorState, client: Client) -> JSON:
    """Backend `Client` (BAPI spec and `client.schema.json`)."""
    sessions = [s for s in (state.session(session_id) for session_id in client.session_ids) if s]
    return {
        "object": "client",
        "id": client.id,
        "session_ids": [s.id for s in sessions],
        "sessions": [bapi_session(s) for s in sessions],
        "sign_in_id": client.sign_in_id,
        "sign_up_id": None,
        "last_active_session_id": client.last_active_session_id,
        "last_authentication_strategy": client.last_authentication_strategy,
        "updated_at": ms(client.updated_at),
        "created_at": ms(client.created_at),
    }


# -- environment -------------------------------------------------------------------------------


def environment(config: EmulatorConfig, base_url: str) -> JSON:
    home = base_url.rstrip("/")
    sign_in_url = config.sign_in_url or f"{home}/sign-in"
    urls = {
        key: home
        for key in (
            "home_url",
            "user_profile_url",
            "waitlist_url",
            "oauth_consent_url",
            "after_sign_in_url",
            "after_sign_up_url",
            "after_sign_out_one_url",
            "after_sign_out_all_url",
            "after_switch_session_url",
            "after_join_waitlist_url",
            "organization_profile_url",
            "create_organization_url",
            "after_leave_organization_url",
            "after_create_organization_url",
            "logo_link_url",
        )
    }
    return {
        "auth_config": {
            "object": "auth_config",
            "id": "aac_emulator",
            "first_name": "on",
            "last_name": "on",
            "email_address": "required",
            "phone_number": "off",
            "username": "on",
            "password": "required",
            "identification_requirements": [["email_address"], ["username"]],
            "identification_strategies": ["email_address", "username"],
            "first_factors": ["password"],
            "second_factors": [],
            "email_address_verification_strategies": [],
            "single_session_mode": True,
            "enhanced_email_deliverability": False,
            "test_mode": not config.production,
            "cookieless_dev": False,
            "url_based_session_syncing": not config.production,
            "claimed_at": None,
            "reverification": False,
            "native_settings": {
                "object": "native_settings",
                "api_enabled": False,
                "trusted_device_sign_in_enabled": False,
                "trusted_device_enrollment_prompt_after_sign_in_enabled": False,
                "trusted_device_enrollment_prompt_after_sign_up_enabled": False,
            },
        },
        "display_config": {
            "object": "display_config",
            "id": "display_config_emulator",
            "instance_environment_type": config.instance_type,
            "application_name": config.application_name,
            "theme": {},
            "preferred_sign_in_strategy": "password",
            "logo_image_url": None,
            "favicon_image_url": None,
            **urls,
            "sign_in_url": sign_in_url,
            "sign_up_url": sign_in_url,
            "support_email": None,
            "branded": False,
            "experimental_force_oauth_first": False,
            "clerk_js_version": None,
            "show_devmode_warning": not config.production,
            "google_one_tap_client_id": None,
            "help_url": None,
            "privacy_policy_url": None,
            "terms_url": None,
            "logo_url": None,
            "favicon_url": None,
            "logo_image": None,
            "favicon_image": None,
            "captcha_public_key": None,
            "captcha_widget_type": None,
            "captcha_public_key_invisible": None,
            "captcha_provider": None,
            "captcha_oauth_bypass": [],
        },
        "user_settings": _user_settings(),
        "organization_settings": {
            "enabled": True,
            "max_allowed_memberships": 0,
            "actions": {"admin_delete": True},
            "domains": {"enabled": False, "enrollment_modes": [], "default_role": "org:member"},
            "creator_role": "org:admin",
        },
        "client_debug_mode": False,
        "maintenance_mode": False,
    }


def _attribute(enabled: bool, *, required: bool = False, first_factor: bool = False) -> JSON:
    return {
        "enabled": enabled,
        "required": required,
        "used_for_first_factor": first_factor,
        "first_factors": [],
        "used_for_second_factor": False,
        "second_factors": [],
        "verifications": [],
        "verify_at_sign_up": False,
        "immutable": False,
    }


def _user_settings() -> JSON:
    """Password sign-in by email address or username; everything else off (what the emulator does)."""
    off = {"enabled": False}
    return {
        "attributes": {
            "email_address": _attribute(True, required=True, first_factor=True),
            "phone_number": _attribute(False),
            "username": _attribute(True, first_factor=True),
            "web3_wallet": _attribute(False),
            "first_name": _attribute(True),
            "last_name": _attribute(True),
            "password": _attribute(True, required=True),
            "authenticator_app": _attribute(False),
            "ticket": _attribute(False),
            "backup_code": _attribute(False),
            "passkey": _attribute(False),
        },
        "social": {},
        "saml": off,
        "enterprise_sso": off,
        "sign_in": {"second_factor": {"required": False}},
        "sign_up": {
            "captcha_enabled": False,
            "captcha_widget_type": "smart",
            "custom_action_required": False,
            "progressive": True,
            "mode": "restricted",
            "legal_consent_enabled": False,
        },
        "restrictions": {
            "allowlist": off,
            "blocklist": off,
            "allowlist_blocklist_disabled_on_sign_in": off,
            "block_email_subaddresses": off,
            "block_disposable_email_domains": off,
        },
        "password_settings": {
            "disable_hibp": True,
            "disable_password_reverification": True,
            "min_length": 1,
            "max_length": 72,
            "require_special_char": False,
            "require_numbers": False,
            "require_uppercase": False,
            "require_lowercase": False,
            "show_zxcvbn": False,
            "min_zxcvbn_strength": 0,
            "enforce_hibp_on_sign_in": False,
            "allowed_special_characters": "",
        },
        "username_settings": {
            "min_length": 1,
            "max_length": 64,
            "allow_extended_special_characters": False,
            "allow_numeric_usernames": True,
        },
        "actions": {"delete_self": False, "create_organization": False, "create_organizations_limit": None},
        "attack_protection": {
            "user_lockout": {"enabled": False, "max_attempts": 100, "duration_in_minutes": 60},
            "pii": off,
            "email_link": {"require_same_client": False},
            "enumeration_protection": off,
        },
        "passkey_settings": {"allow_autofill": False, "show_sign_in_button": False, "satisfies_second_factor": False},
    }
