"""One emulated Clerk instance: its settings, key ring and state, shared by the FAPI and BAPI apps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulator.clock import Clock, system_clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.ids import IdFactory
from gateway.emulator.machine_tokens import MachineTokenStore
from gateway.emulator.seed import Seed, SeedUser
from gateway.emulator.serializers import bapi_session
from gateway.emulator.signing import KeyRing
from gateway.emulator.state import EmulatorState, Session
from gateway.emulator.webhooks import WebhookSender

INSTANCE_ID = "ins_emulator"


@dataclass(frozen=True, slots=True)
class Instance:
    config: EmulatorConfig
    state: EmulatorState
    keys: KeyRing
    started_at_ms: int
    machine_tokens: MachineTokenStore
    webhooks: WebhookSender

    @classmethod
    def create(
        cls,
        config: EmulatorConfig,
        seed: Seed,
        *,
        clock: Clock = system_clock,
        ids: IdFactory | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> Instance:
        ids = ids or IdFactory()
        state = EmulatorState(config, seed, clock, ids)
        keys = KeyRing(clock, ids, config.rotation_grace, signing_key)
        webhooks = WebhookSender(
            instance_id=INSTANCE_ID, clock=clock, ids=ids, urls=config.webhook_urls, secret=config.webhook_secret
        )

        def announce(event_type: str, record: object) -> None:
            webhooks.send(event_type, event_data(record))

        state.listeners.append(announce)
        return cls(
            config=config,
            state=state,
            keys=keys,
            started_at_ms=int(clock() * 1000),
            machine_tokens=MachineTokenStore(clock, keys, config.issuer),
            webhooks=webhooks,
        )


def event_data(record: object) -> dict[str, Any]:
    """An event's `data` as Clerk sends it: the session, or the deleted object (`{"object", "id", "deleted"}`)."""
    if isinstance(record, Session):
        return bapi_session(record)
    if isinstance(record, SeedUser):
        return {"object": "user", "id": record.id, "deleted": True}
    raise TypeError(f"no webhook payload for {type(record).__name__}")
