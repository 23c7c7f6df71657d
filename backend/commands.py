"""The officer's and operator's console on the backend side: signed commands down, results up.

An officer releases a held truck after looking at its evidence (``release``: a command-tier
key signs a ``remote_release`` echoing the hold's challenge); an operator pushes the desired
pass trust list, revocations and settings (``trust_update`` / ``revocations`` with the
site's root key, ``config`` with a command key). Every command is signed here, sent through
the backend's MQTT connection, and its ``cmd_result`` is read back from the backend's store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.errors import BackendSetupError
from edge_agent.telemetry.commands import sign_command

COMMAND_LIFETIME_S = 60


class Backend(Protocol):
    def events(self, lane: str | None = None) -> list[dict[str, Any]]: ...

    def publish_command(self, site: str, lane: str, name: str, payload: bytes) -> None: ...

    def pass_uses(self) -> dict[str, list[tuple[str, str | None]]]: ...


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    key: Ed25519PrivateKey
    issuer: str  # who signs: an officer id, or the operations service


class CommandService:
    """Signs and sends commands for the lanes of one site; reads their results back."""

    def __init__(
        self, backend: Backend, site: str, *, officer: SigningKey, root: SigningKey | None = None
    ) -> None:
        self._backend = backend
        self._site = site
        self._officer = officer
        self._root = root

    def release(self, lane: str, hold: Mapping[str, Any]) -> str:
        """Release the truck held by ``hold`` (its ``decision`` event); returns the cmd_id."""
        args = {"challenge": hold["data"]["challenge"], "transit_id": hold["transit_id"]}
        return self.send(lane, "remote_release", args, cmd_id=f"release-{hold['transit_id']}")

    def refuse(self, lane: str, hold: Mapping[str, Any], reason: str) -> str:
        """Refuse the truck held by ``hold``: the arm stays down, the driver is told to back
        off, and the transit ends ``refused``; returns the cmd_id."""
        args = {"challenge": hold["data"]["challenge"], "transit_id": hold["transit_id"],
                "reason": reason}
        return self.send(lane, "remote_refuse", args, cmd_id=f"refuse-{hold['transit_id']}")

    def reweigh(self, lane: str, hold: Mapping[str, Any], reason: str = "") -> str:
        """Ask the truck held by ``hold`` to back off and drive on again; its pass stays
        unused. Returns the cmd_id."""
        args = {"challenge": hold["data"]["challenge"], "transit_id": hold["transit_id"]}
        if reason:
            args["reason"] = reason
        return self.send(lane, "remote_reweigh", args, cmd_id=f"reweigh-{hold['transit_id']}")

    def trust_update(
        self,
        lane: str,
        version: int,
        *,
        pass_keys: list[dict[str, Any]] | None = None,
        command_keys: list[dict[str, str]] | None = None,
    ) -> str:
        return self._versioned(lane, "trust_update", version, pass_keys=pass_keys,
                               command_keys=command_keys)

    def revocations(
        self,
        lane: str,
        version: int,
        *,
        pass_hashes: list[str] | None = None,
        command_kids: list[str] | None = None,
    ) -> str:
        return self._versioned(lane, "revocations", version, pass_hashes=pass_hashes,
                               command_kids=command_kids)

    def _versioned(self, lane: str, name: str, version: int, **lists: list[Any] | None) -> str:
        """A desired-state command: the lists given replace the lane's, the others stay."""
        args = {"version": version, **{k: v for k, v in lists.items() if v is not None}}
        return self.send(lane, name, args)

    def share_site_uses(self, lanes: list[str], version: int) -> dict[str, str]:
        """Tell each lane of the site every pass the backend has seen used at any of them
        (``site_uses``); returns lane -> cmd_id."""
        hashes = sorted(self._backend.pass_uses())
        return {lane: self.send(lane, "site_uses", {"version": version, "pass_hashes": hashes})
                for lane in lanes}

    def config(self, lane: str, version: int, settings: Mapping[str, Any]) -> str:
        return self.send(lane, "config", {"version": version, "settings": dict(settings)})

    def send(
        self, lane: str, name: str, args: Mapping[str, Any], *, cmd_id: str | None = None
    ) -> str:
        """Sign ``name`` with the tier it needs and publish it; returns the cmd_id."""
        signer = self._root if name in ("trust_update", "revocations") else self._officer
        if signer is None:
            raise BackendSetupError(f"{name} needs the site's root key, which this console lacks")
        cmd_id = cmd_id or f"{name}-{os.urandom(6).hex()}"
        now = int(time.time())
        claims = {
            "cmd_id": cmd_id,
            "name": name,
            "site": self._site,
            "lane": lane,
            "iat": now,
            "exp": now + COMMAND_LIFETIME_S,
            "nonce": os.urandom(12).hex(),
            "issuer": signer.issuer,
            "args": dict(args),
        }
        payload = sign_command(signer.key, signer.kid, claims)
        self._backend.publish_command(self._site, lane, name, payload)
        return cmd_id

    def result(self, lane: str, cmd_id: str, *, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """The ``data`` of the lane's ``cmd_result`` for ``cmd_id`` once stored, else None."""
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self._backend.events(lane):
                if event.get("type") == "cmd_result" and event["data"].get("cmd_id") == cmd_id:
                    data: dict[str, Any] = event["data"]
                    return data
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
