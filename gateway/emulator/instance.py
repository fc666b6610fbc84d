"""One emulated Clerk instance: its settings, key ring and state, shared by the FAPI and BAPI apps."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.emulator.clock import Clock, system_clock
from gateway.emulator.config import EmulatorConfig
from gateway.emulator.ids import IdFactory
from gateway.emulator.machine_tokens import MachineTokenStore
from gateway.emulator.seed import Seed
from gateway.emulator.signing import KeyRing
from gateway.emulator.state import EmulatorState


@dataclass(frozen=True, slots=True)
class Instance:
    config: EmulatorConfig
    state: EmulatorState
    keys: KeyRing
    started_at_ms: int
    machine_tokens: MachineTokenStore

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
        return cls(
            config=config,
            state=state,
            keys=keys,
            started_at_ms=int(clock() * 1000),
            machine_tokens=MachineTokenStore(clock, keys, config.issuer),
        )
