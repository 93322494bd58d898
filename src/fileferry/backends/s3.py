"""S3 storage: ``root``, a home or a virtual folder given as ``s3://BUCKET[/PREFIX]``.

Settings come from the ``[s3]`` table (``config.s3``), then the standard AWS
variables. One obstore client per bucket and one signed-request client are
shared by every storage of the server, so thousands of homes in one bucket
cost one connection pool. ``check`` runs at start and asks the store once
whether the bucket is there and the credentials work, so a typo in the
bucket name is one clear line at start instead of a 550 for every client.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fileferry.errors import ConfigError

if TYPE_CHECKING:
    from fileferry.config.model import S3Config, ServerConfig
    from fileferry.storage.base import Storage
    from fileferry.storage.s3parts import UploadGate
    from fileferry.storage.s3request import Credentials, SignedClient

#: obstore's retries: idempotent requests and 5xx/throttling answers are retried
#: with exponential backoff (at most ``max_retries`` times, a few seconds of
#: waiting in all), but none is begun once this long has passed since the
#: first attempt. A part upload on a busy store can take over 30 s before it
#: fails (SeaweedFS answers 500 when its own chunk writes time out), and with
#: a 30 s limit such a part was never retried: the whole upload failed on
#: one late 500. A store that is down still fails fast: connections are
#: refused at once and the retry count runs out in seconds.
RETRY_TIMEOUT = "300s"


def _env(name: str, *more: str) -> str | None:
    for n in (name, *more):
        value = os.environ.get(n)
        if value:
            return value
    return None


class S3Settings:
    """Endpoint, region and credentials: the config's ``[s3]`` first, then AWS_* variables."""

    def __init__(self, config: S3Config | None) -> None:
        self.endpoint = (config and config.endpoint) or _env("AWS_ENDPOINT_URL", "AWS_ENDPOINT")
        self.region = (
            (config and config.region) or _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        )
        allow = config.allow_http if config is not None else None
        if allow is None:
            allow = (_env("AWS_ALLOW_HTTP") or "").lower() in ("1", "true", "yes", "on")
        self.allow_http = bool(allow)
        self.access_key_id = (config and config.access_key_id) or _env("AWS_ACCESS_KEY_ID")
        secret_file = config.secret_access_key_file if config is not None else None
        if secret_file:
            try:
                with open(os.path.expanduser(secret_file), encoding="utf-8") as f:
                    self._secret: str | None = f.read().strip()
            except OSError as exc:
                raise ConfigError(
                    f"s3_secret_access_key_file: cannot read {secret_file!r} ({exc.strerror})"
                ) from None
        else:
            self._secret = _env("AWS_SECRET_ACCESS_KEY")
        self.session_token = _env("AWS_SESSION_TOKEN")

    def __repr__(self) -> str:  # never the secret
        return f"S3Settings(endpoint={self.endpoint!r}, region={self.region!r})"

    def credentials(self) -> Credentials | None:
        from fileferry.storage.s3request import Credentials

        if not self.access_key_id or not self._secret:
            return None
        return Credentials(self.access_key_id, self._secret, self.session_token)

    def store(self, bucket: str) -> Any:
        from obstore.store import S3Store

        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint:
            kwargs["endpoint"] = self.endpoint
        creds = self.credentials()
        if creds is not None:
            kwargs["access_key_id"] = creds.access_key_id
            kwargs["secret_access_key"] = creds.secret_access_key
            if creds.session_token:
                kwargs["session_token"] = creds.session_token
        else:
            kwargs["skip_signature"] = True
        return S3Store(
            bucket,
            **kwargs,
            client_options={
                "allow_http": self.allow_http,
                "connect_timeout": "5s",
                # A download may legitimately stream for hours to a slow client.
                "timeout": "24h",
                "pool_idle_timeout": "30s",
            },
            retry_config={
                "max_retries": 6,
                "retry_timeout": _seconds(RETRY_TIMEOUT),
                "backoff": {
                    "init_backoff": _seconds("0.1s"),
                    "max_backoff": _seconds("2s"),
                    "base": 2,
                },
            },
        )

    def client(self) -> SignedClient:
        from fileferry.storage.s3request import SignedClient

        endpoint = self.endpoint or f"https://s3.{self.region}.amazonaws.com"
        return SignedClient(endpoint, self.region, self.credentials())


def _seconds(text: str) -> Any:
    import datetime

    return datetime.timedelta(seconds=float(text.rstrip("s")))


class S3Locations:
    """Every ``s3://`` storage of one server, sharing clients; made on first use."""

    def __init__(self, config: ServerConfig | None) -> None:
        self._root = config.storage.root if config is not None else ""
        self.settings = S3Settings(config.s3 if config is not None else None)
        self._client: SignedClient | None = None
        self._stores: dict[str, Any] = {}
        self._gates: dict[str, UploadGate] = {}  # one per store: its parts in flight
        self._storages: dict[str, Storage] = {}

    def storage(self, location: str) -> Storage:
        from fileferry.storage.s3 import S3Storage
        from fileferry.storage.s3parts import UploadGate
        from fileferry.storage.s3paths import Location

        loc = Location.parse(location)
        found = self._storages.get(str(loc))
        if found is None:
            if self._client is None:
                self._client = self.settings.client()
            store = self._stores.get(loc.bucket)
            if store is None:
                store = self._stores[loc.bucket] = self.settings.store(loc.bucket)
                self._gates[loc.bucket] = UploadGate()
            found = self._storages[str(loc)] = S3Storage(
                loc, store, self._client, self._gates[loc.bucket]
            )
        return found

    async def sweep(self, temp_max_age: float, partial_max_age: float) -> list[Any]:
        """Abort the dead multipart uploads of every bucket prefix in use (crash leftovers)."""
        from fileferry.backends import scheme_of
        from fileferry.storage.localsweep import Swept

        if scheme_of(self._root) == "s3":
            self.storage(self._root)
        found = []
        for storage in list(self._storages.values()):
            aborted, _ = await storage.sweep_uploads(temp_max_age)  # type: ignore[attr-defined]
            found.append(Swept(removed=aborted))
        return found

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._storages.clear()
        self._stores.clear()
        self._gates.clear()


def check(location: str) -> str:
    """``location`` normalised (``s3://bucket/prefix``), or one line saying what is wrong."""
    from fileferry.storage.s3paths import Location

    try:
        loc = Location.parse(location)
    except ValueError as exc:
        raise ConfigError(f"root: {exc}") from None
    except Exception:
        raise ConfigError(f"root: {location!r} has a name S3 cannot store") from None
    try:
        import obstore  # noqa: F401 - the extra must be installed
    except ImportError:
        raise ConfigError("root: s3:// needs the S3 extra: pip install 'fileferry[s3]'") from None
    return str(loc)


def probe(location: str, config: ServerConfig | None = None) -> None:
    """Ask the store once whether the bucket is there and the credentials work (at start)."""
    from fileferry.storage.s3paths import Location

    loc = Location.parse(location)
    problem = bucket_problem(S3Settings(config.s3 if config is not None else None), loc.bucket)
    if problem is not None:
        raise ConfigError(f"root: {loc}: {problem}")


def bucket_problem(settings: S3Settings, bucket: str) -> str | None:
    """Why ``bucket`` cannot be served (missing, denied, unreachable), or ``None``."""
    client = settings.client()
    try:
        answer = client.request_blocking("GET", bucket, query={"list-type": "2", "max-keys": "1"})
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return f"the object store at {settings.endpoint or 'AWS'} is unreachable ({reason})"
    if answer.status == 200:
        return None
    code = answer.error_code()
    if code == "NoSuchBucket" or answer.status == 404:
        return f"bucket {bucket!r} does not exist"
    if answer.status in (401, 403):
        return (
            f"access denied to bucket {bucket!r} ({code or answer.status}): check the credentials"
        )
    return f"the object store answered HTTP {answer.status} {code}".rstrip()


def provider(config: ServerConfig) -> Any:
    """The server's storage provider; it routes every location by scheme (local.py)."""
    from fileferry.backends.local import LocalStorageProvider

    return LocalStorageProvider(config)


def locations(config: ServerConfig | None) -> S3Locations:
    return S3Locations(config)
