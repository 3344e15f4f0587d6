"""Device provisioning: a board that knows its profile's key and secret gets an access token.

Strategy: ThingsBoard's rules (DeviceProvisionServiceImpl.provisionDevice), once for every
transport. A request names `provisionDeviceKey` and `provisionDeviceSecret`; the profile
whose key it is, with provisioning switched on and that secret (compared in constant time),
decides. ALLOW_CREATE_NEW_DEVICES creates the device (named `deviceName`, else 20 random
letters and digits) with the token asked for or a new one; CHECK_PRE_PROVISIONED_DEVICES
answers the token of the device of that name in that profile, once. Both mark the device
with the server attribute `provisionState` = "provisioned", as ThingsBoard does. A missing,
unknown or wrong key or secret answers NOT_FOUND before any device is looked at, so a
wrong secret never tells whether a device exists; the other refusals answer FAILURE
(ThingsBoard's "Failed to provision device!", followed here by the reason). Every request
counts against its client address's rate limit first (`--provision-rate-limit`). The
transports only frame: MQTT's `/provision/request`, HTTP's `POST /api/v1/provision`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tinyboard.core.attributes import AttributeService
from tinyboard.core.ingest import parse_json
from tinyboard.core.limits import RateLimit
from tinyboard.core.models import Device, DeviceProfile
from tinyboard.core.ota_state import OtaStateService
from tinyboard.errors import (
    ConflictError,
    DataValidationError,
    NotFoundError,
    PayloadError,
    StorageError,
    TinyboardError,
)
from tinyboard.storage.base import Store

log = logging.getLogger(__name__)

Status = Literal["SUCCESS", "NOT_FOUND", "FAILURE"]
NOT_FOUND_TEXT = "Provision data was not found!"
FAILURE_TEXT = "Failed to provision device!"
"""ThingsBoard's `errorMsg` texts (JsonConverter.toJson(ProvisionDeviceResponseMsg))."""
PROVISION_STATE = "provisionState"
PROVISIONED = "provisioned"
KEY_TYPES = ("ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES")
"""The strategies a key and secret provision by (X509_CERTIFICATE_CHAIN needs device
certificates, which tinyboard has not: such a profile answers NOT_FOUND)."""
CREDENTIALS_TYPES = ("ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE", "LWM2M_CREDENTIALS")
KEY_TAKEN = "Device profile with such provision device key already exists!"
REQUEST_SHAPE = (
    'a provision request is a JSON object like {"deviceName": "...", '
    '"provisionDeviceKey": "...", "provisionDeviceSecret": "..."}'
)
NAME_ALPHABET = string.ascii_letters + string.digits
MAX_TRACKED = 100_000
"""Client addresses whose rate-limit buckets are remembered; the least recent go first."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvisionRequest:
    """What a device sends (ThingsBoard's JsonConverter.convertToProvisionRequestMsg)."""

    key: str
    secret: str
    device_name: str | None = None
    credentials_type: str = "ACCESS_TOKEN"
    token: str | None = None
    gateway: bool = False

    @classmethod
    def from_json(cls, payload: bytes) -> ProvisionRequest:
        doc = parse_json(payload)
        if not isinstance(doc, dict):
            raise PayloadError(REQUEST_SHAPE)
        for field in ("provisionDeviceKey", "provisionDeviceSecret"):
            if not isinstance(doc.get(field), str):
                raise PayloadError(f"{field} is missing or not a string: {REQUEST_SHAPE}")
        kind = doc.get("credentialsType") or "ACCESS_TOKEN"
        if kind not in CREDENTIALS_TYPES:
            raise PayloadError(f"credentialsType must be one of {', '.join(CREDENTIALS_TYPES)}")
        return cls(
            key=doc["provisionDeviceKey"],
            secret=doc["provisionDeviceSecret"],
            device_name=_text(doc, "deviceName"),
            credentials_type=kind,
            token=_text(doc, "token"),
            gateway=doc.get("gateway") is True,
        )


def _text(doc: dict[str, Any], field: str) -> str | None:
    value = doc.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{field} must be a string")
    return value


@dataclass(frozen=True, slots=True)
class ProvisionAnswer:
    """ThingsBoard's answer: credentials on SUCCESS, `errorMsg` otherwise."""

    status: Status
    token: str = ""
    error: str = ""
    retry_after: int = 0
    """Seconds to wait (an address over its rate limit; HTTP: 429 with Retry-After)."""

    def as_json(self) -> dict[str, str]:
        if self.status == "SUCCESS":
            return {
                "credentialsValue": self.token,
                "credentialsType": "ACCESS_TOKEN",
                "status": "SUCCESS",
            }
        return {"errorMsg": self.error, "status": self.status}


NOT_FOUND = ProvisionAnswer("NOT_FOUND", error=NOT_FOUND_TEXT)


def failure(reason: str) -> ProvisionAnswer:
    return ProvisionAnswer("FAILURE", error=f"{FAILURE_TEXT} {reason}")


class AddressLimit:
    """Token buckets (ThingsBoard's count:seconds text, core/limits.py) per client address."""

    def __init__(
        self, limit: RateLimit | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[str, tuple[float, list[float]]] = {}

    def take(self, address: str) -> float:
        """Count one request from `address`: 0 if allowed, else the seconds to wait."""
        if self.limit is None:
            return 0.0
        now = self._clock()
        buckets = self.limit.buckets
        last, levels = self._buckets.pop(address, (now, [c for c, _ in buckets]))
        elapsed = max(0.0, now - last)
        pairs = zip(levels, buckets, strict=True)
        levels = [min(capacity, level + elapsed * rate) for level, (capacity, rate) in pairs]
        waits = [(1 - level) / rate for level, (_, rate) in zip(levels, buckets, strict=True)]
        wait = max(waits, default=0.0)
        if wait <= 0:
            levels = [level - 1 for level in levels]
        self._buckets[address] = (now, levels)
        while len(self._buckets) > MAX_TRACKED:
            del self._buckets[next(iter(self._buckets))]
        return max(0.0, wait)


class Provisioning:
    """Answers provision requests (`provision`) and checks profiles' settings (`check`)."""

    def __init__(
        self,
        store: Store,
        attributes: AttributeService,
        ota: OtaStateService,
        limit: AddressLimit | None = None,
    ) -> None:
        self.store = store
        self.attributes = attributes
        self.ota = ota
        self.limit = limit or AddressLimit(None)
        self._lock = asyncio.Lock()
        """One provisioning at a time: a pre-provisioned device is handed out once."""

    async def provision(self, payload: bytes, address: str) -> ProvisionAnswer:
        """The answer to one request from `address`; `PayloadError` for a malformed one."""
        wait = self.limit.take(address)
        if wait:
            seconds = max(1, int(wait + 0.999))
            log.info("provisioning from %s refused: over its rate limit", address)
            return ProvisionAnswer(
                "FAILURE",
                error=f"too many provision requests from this address; try again in {seconds} s",
                retry_after=seconds,
            )
        request = ProvisionRequest.from_json(payload)
        async with self._lock:
            try:
                answer = await self._answer(request)
            except StorageError as exc:
                log.error("provisioning failed: %s", exc)
                answer = failure("The server could not store the device; try again later.")
        log.info("provisioning from %s: %s %s", address, answer.status, answer.error)
        return answer

    async def _answer(self, request: ProvisionRequest) -> ProvisionAnswer:
        name = request.device_name
        if name is not None and not name.strip():
            return failure("The device name is blank.")
        profile = await self._profile(request)
        if profile is None:
            return NOT_FOUND
        name = None if name is None else name.strip()
        if profile.settings.get("provisionType") == "ALLOW_CREATE_NEW_DEVICES":
            return await self._create(profile, request, name)
        return await self._pre_provisioned(profile, name)

    async def _profile(self, request: ProvisionRequest) -> DeviceProfile | None:
        """The profile of this key and secret with key-and-secret provisioning on, or None.
        Every profile's key and the secret are compared in constant time, so how long a
        wrong guess takes tells nothing about which part was wrong."""
        if not request.key or not request.secret:
            return None
        found = None
        for profile in await self.store.profiles():
            key = profile.settings.get("provisionDeviceKey") or ""
            if hmac.compare_digest(key.encode(), request.key.encode()):
                found = profile
        secret = "" if found is None else _secret(found) or ""
        right = hmac.compare_digest(secret.encode(), request.secret.encode())
        if found is None or not secret or not right:
            return None
        return found if found.settings.get("provisionType") in KEY_TYPES else None

    async def _create(
        self, profile: DeviceProfile, request: ProvisionRequest, name: str | None
    ) -> ProvisionAnswer:
        if request.credentials_type != "ACCESS_TOKEN":
            return failure(
                f"tinyboard's devices have access tokens only, not {request.credentials_type}."
            )
        name = name or "".join(secrets.choice(NAME_ALPHABET) for _ in range(20))
        if await self._device(name) is not None:
            return failure(f"Device with name {name!r} already exists.")
        info = {"gateway": True} if request.gateway else None
        async with self.ota.lock:
            try:
                device = await self.store.create_device(
                    name, profile_id=profile.id, token=request.token, additional_info=info
                )
            except ConflictError:
                return failure("That device name or access token is taken.")
            except StorageError:
                raise
            except TinyboardError as exc:  # a name or token the store cannot take
                return failure(str(exc).capitalize() + ".")
            await self.ota.device_saved(None, device)
        await self.attributes.update_server(device, {PROVISION_STATE: PROVISIONED})
        return ProvisionAnswer("SUCCESS", token=device.token)

    async def _pre_provisioned(self, profile: DeviceProfile, name: str | None) -> ProvisionAnswer:
        device = None if name is None else await self._device(name)
        if device is None or device.profile_id != profile.id:
            return failure("No pre-provisioned device of that name in this profile.")
        state = await self.store.attributes(device.key, "SERVER", [PROVISION_STATE])
        if PROVISION_STATE in state:
            return failure("The device is provisioned already.")
        await self.attributes.update_server(device, {PROVISION_STATE: PROVISIONED})
        return ProvisionAnswer("SUCCESS", token=device.token)

    async def _device(self, name: str) -> Device | None:
        try:
            device = await self.store.get_device(name)
        except NotFoundError:
            return None
        return device if device.name == name else None  # `get_device` also takes ids

    @staticmethod
    def check(profile: DeviceProfile, others: list[DeviceProfile]) -> None:
        """Refuse provisioning settings that cannot work (`DataValidationError`, HTTP 400):
        a key another profile has (ThingsBoard's unique key), or a key-and-secret strategy
        without both, or whose `profileData.provisionConfiguration.type` differs."""
        kind = profile.settings.get("provisionType", "DISABLED")
        key = profile.settings.get("provisionDeviceKey")
        config = profile.profile_data.get("provisionConfiguration") or {}
        if not isinstance(config, dict):
            raise DataValidationError("profileData.provisionConfiguration must be an object")
        secret = config.get("provisionDeviceSecret")
        if secret is not None and not isinstance(secret, str):
            raise DataValidationError("provisionDeviceSecret must be a string")
        if key and any(
            p.id != profile.id and p.settings.get("provisionDeviceKey") == key for p in others
        ):
            raise DataValidationError(KEY_TAKEN)
        if kind not in KEY_TYPES:
            return
        if config.get("type") != kind:
            raise DataValidationError(
                f"provisionType is {kind}: profileData.provisionConfiguration must be "
                f'{{"type": "{kind}", "provisionDeviceSecret": "..."}}'
            )
        if not key or not secret:
            raise DataValidationError(
                f"provisionType {kind} needs a provisionDeviceKey and a "
                "profileData.provisionConfiguration.provisionDeviceSecret"
            )


def _secret(profile: DeviceProfile) -> str | None:
    config = profile.profile_data.get("provisionConfiguration")
    secret = config.get("provisionDeviceSecret") if isinstance(config, dict) else None
    return secret if isinstance(secret, str) else None
