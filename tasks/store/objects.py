"""Local folders and S3 behind one small interface, chosen from the URI in one place.

boto3 lists and reads small objects; polars and deltalake read and write table data through their
own object-store clients, configured from the same resolved AWS chain via ``storage_options()``: its
credentials of now, which botocore renews before they expire (a role's), so asked for again by each
client opened rather than kept for a run.
"""
from __future__ import annotations

import hashlib
import os
import re
import stat
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from tasks.errors import StorageError

if TYPE_CHECKING:
    from botocore.credentials import ReadOnlyCredentials

DEFAULT_MAX_ATTEMPTS = 9  # boto3 attempts per request, the first included, when the AWS chain sets none
# What S3 answers a conditional request whose condition does not hold: the object changed, another
# conditional request on it is in flight, or (If-Match) it is gone.
_REFUSED = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"}
# Error codes S3 (and compatible stores) answer when throttling; 5xx answers are transient too.
_THROTTLING = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
               "RequestThrottled", "RequestThrottledException"}


PARTIAL = re.compile(r".+#\d+")  # a local object-store write in progress: "part-0.parquet#1"
PROBE_BYTES = 1 << 16  # what the writability probe writes: a full disk refuses it (an empty file still fits)


@dataclass(frozen=True)
class FileInfo:
    uri: str
    size: int
    version: str  # etag on S3, mtime_ns locally: changes when the file does


class Storage(ABC):
    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")

    def join(self, *parts: str) -> str:
        return "/".join([self.uri, *(p.strip("/") for p in parts)])

    @abstractmethod
    def list_dirs(self, uri: str) -> list[str]:
        """Names of the immediate sub-folders of ``uri`` (empty when it does not exist)."""

    @abstractmethod
    def list_files(self, uri: str) -> list[FileInfo]:
        """Files directly under ``uri``, sorted by name."""

    @abstractmethod
    def write_text(self, uri: str, text: str) -> None:
        """Write a small object whole: readers see the old content or the new, never a part."""

    @abstractmethod
    def read_text(self, uri: str) -> str:
        """A small object's text; FileNotFoundError when it does not exist."""

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove a small object; nothing happens when it does not exist."""

    @abstractmethod
    def read_versioned(self, uri: str) -> tuple[str, str] | None:
        """A small object's text and version tag (what ``write_if`` compares), or None when absent."""

    @abstractmethod
    def write_if(self, uri: str, text: str, version: str | None) -> bool:
        """Write a small object only if it is still at ``version`` (None: only if it does not exist);
        False when another writer got there first. The compare and the write are one step, for every
        process and machine that shares the store: what leases are built on."""

    @abstractmethod
    def delete_if(self, uri: str, version: str) -> bool:
        """Remove a small object only if it is still at ``version`` (one step, as ``write_if``); False
        when it changed or is gone: a lease given back is removed, never one another run took since."""

    @abstractmethod
    def remove_partial_writes(self, uri: str, older_than_s: float) -> int:
        """Remove what writers killed mid-write left under ``uri`` more than ``older_than_s`` ago (the
        object store's ``name#N`` staging files locally, uncompleted multipart uploads on S3): no
        Delta log names them, so neither readers nor vacuum see them. Returns how many."""

    def check_reachable(self, attempts: int, timeout_s: float) -> None:
        """Fail fast, before any work, when the store does not answer (a local folder always does)."""

    def check_writable(self, uri: str) -> None:
        """Fail fast, before any work, when ``uri`` cannot be written (checked on local folders: on S3
        a refused write is one line already, from the write itself)."""

    def check_exists(self, what: str) -> None:
        """Fail fast, before any work, when this root is a local folder that does not exist (an S3
        prefix has no existence of its own: its listing says what it holds)."""

    def storage_options(self) -> dict[str, str] | None:
        """Options for polars/deltalake object-store clients (None for local paths), as of now: they hold
        credentials that renew, so a client is opened with the options of its time, never a run's."""
        return None


class LocalStorage(Storage):
    """A local folder. File-system faults (a read-only folder, a full disk, a file where a folder
    should be) are ``StorageError``s naming the path; only a missing file stays ``FileNotFoundError``,
    which callers read as "absent"."""

    def __init__(self, uri: str):
        super().__init__(uri[len("file://"):] if uri.startswith("file://") else uri)

    def check_exists(self, what: str) -> None:
        if not Path(self.uri).is_dir():
            raise StorageError(f"{what} {self.uri} is not a folder: check the path (a relative one is read against "
                               "the config file's folder)")

    @staticmethod
    @contextmanager
    def _fs(what: str, path: str | Path) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as e:
            reason = ("a file stands where a folder should be" if isinstance(e, (NotADirectoryError, FileExistsError))
                      else e.strerror or str(e))
            raise StorageError(f"{what} {path} failed: {reason}") from None

    @staticmethod
    def _lock(p: Path):
        """The OS lock of ``p``'s folder: one lock file a folder (``.lock``), never one per object, so
        removing an object leaves nothing behind and no lock file is ever removed while in use."""
        from filelock import FileLock

        return FileLock(p.parent / ".lock")

    def check_writable(self, uri: str) -> None:
        """A file written (``PROBE_BYTES``, synced) and removed in ``uri``, or in its nearest existing
        parent (where it will be made): a read-only folder or a full disk stops the command here, not
        half-way through a publish."""
        import tempfile

        folder = Path(uri).absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".latentfeed-probe-") as f:
                f.write(b"\0" * PROBE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StorageError(f"{folder} is not writable ({e.strerror}): latentfeed writes the feature table "
                               "and its state under [features].uri") from None

    def list_dirs(self, uri: str) -> list[str]:
        p = Path(uri)
        with self._fs("listing", p):
            return sorted(c.name for c in p.iterdir() if c.is_dir()) if p.is_dir() else []

    def list_files(self, uri: str) -> list[FileInfo]:
        p = Path(uri)
        with self._fs("listing", p):
            if not p.is_dir():
                return []
            found = []
            for f in sorted(p.iterdir()):
                if f.name.startswith((".", "_")):
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:  # removed since it was listed (a lease given back)
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(FileInfo(str(f), st.st_size, str(st.st_mtime_ns)))
            return found

    def write_text(self, uri: str, text: str) -> None:
        p = Path(uri)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex[:12]}.tmp")  # a writer's own: two never share one
        with self._fs("writing", p):
            p.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.write_text(text)
                tmp.replace(p)  # atomic on one file system
            finally:
                tmp.unlink(missing_ok=True)  # a full disk leaves no partial temporary file

    def read_text(self, uri: str) -> str:
        with self._fs("reading", uri):
            return Path(uri).read_text()

    def delete(self, uri: str) -> None:
        with self._fs("deleting", uri):
            Path(uri).unlink(missing_ok=True)

    def remove_partial_writes(self, uri: str, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        with self._fs("removing partial writes under", uri):
            partial = [f for f in Path(uri).rglob("*#*") if f.is_file() and PARTIAL.fullmatch(f.name)
                       and f.stat().st_mtime < cutoff]
            for f in partial:
                f.unlink(missing_ok=True)
        return len(partial)

    def read_versioned(self, uri: str) -> tuple[str, str] | None:
        try:
            text = self.read_text(uri)
        except FileNotFoundError:
            return None
        return text, hashlib.sha256(text.encode()).hexdigest()

    def write_if(self, uri: str, text: str, version: str | None) -> bool:
        p = Path(uri)
        with self._fs("writing", p):
            p.parent.mkdir(parents=True, exist_ok=True)
            with self._lock(p):  # an OS lock: every process on this file system
                now = self.read_versioned(uri)
                if (now[1] if now else None) != version:
                    return False
                self.write_text(uri, text)
                return True

    def delete_if(self, uri: str, version: str) -> bool:
        p = Path(uri)
        with self._fs("deleting", p):
            if not p.parent.is_dir():
                return False
            with self._lock(p):
                now = self.read_versioned(uri)
                if now is None or now[1] != version:
                    return False
                p.unlink()
                return True


class S3Storage(Storage):
    """S3 or any S3-compatible store (MinIO, moto) named by ``AWS_ENDPOINT_URL``."""

    @cached_property
    def _session(self):
        import boto3

        return boto3.session.Session()

    @cached_property
    def client(self):
        from botocore.config import Config

        # "standard" retries throttling, 5xx and dropped connections with exponential backoff; the
        # attempts are the AWS chain's (AWS_MAX_ATTEMPTS, a profile's max_attempts), 9 when it sets none.
        attempts = self._session._session.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
        return self._session.client("s3", config=Config(retries={"total_max_attempts": attempts, "mode": "standard"},
                                                        connect_timeout=5, read_timeout=30))

    @staticmethod
    def _split(uri: str) -> tuple[str, str]:
        u = urlparse(uri)
        return u.netloc, u.path.lstrip("/")

    def _call(self, what: str, fn, **kw):
        from botocore.exceptions import BotoCoreError, ClientError, CredentialRetrievalError, NoCredentialsError

        try:
            return fn(**kw)
        except NoCredentialsError:
            raise StorageError(f"{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY, a profile, or an instance role") from None
        except CredentialRetrievalError as e:  # a source of the chain failed, at first or when renewing
            reason = " ".join(str(e).split())  # one line, whatever a credential_process wrote to stderr
            raise StorageError(f"{what}: the AWS credential chain could not get credentials ({reason}); check the "
                               "profile, role or credential_process it uses") from None
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"{what}: no such object") from None
            hint = {"NoSuchBucket": "the bucket does not exist", "InvalidAccessKeyId": "the access key is wrong",
                    "SignatureDoesNotMatch": "the secret key is wrong", "AccessDenied": "access denied"}
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code not in hint and (status >= 500 or code in _THROTTLING):
                attempts = e.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
                raise StorageError(f"{what}: the S3 endpoint still answered {code} (HTTP {status}) after {attempts} "
                                   "attempt(s) with backoff; try again later (AWS_MAX_ATTEMPTS sets the attempts)"
                                   ) from None
            raise StorageError(f"{what}: {hint.get(code, code)}") from None
        except BotoCoreError as e:
            raise StorageError(f"{what}: cannot reach the S3 endpoint {self.client.meta.endpoint_url} "
                               f"({type(e).__name__}); check AWS_ENDPOINT_URL and the network") from None

    def check_reachable(self, attempts: int, timeout_s: float) -> None:
        """One listing with a budget of its own (``attempts``, ``timeout_s`` to connect and to answer):
        an endpoint that does not answer, a missing bucket or wrong keys fail it quickly, while the
        client the run uses keeps its many attempts."""
        from botocore.config import Config

        quick = self._session.client("s3", config=Config(
            retries={"total_max_attempts": attempts, "mode": "standard"},
            connect_timeout=timeout_s, read_timeout=timeout_s))
        bucket, prefix = self._split(self.uri + "/")
        try:
            self._call(f"checking {self.uri}", quick.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1)
        except FileNotFoundError:  # a bare 404 to a listing: not what an S3 store answers
            raise StorageError(f"checking {self.uri}: {quick.meta.endpoint_url} answered 404 Not Found to a "
                               "listing: it is not an S3 endpoint, or has no such bucket; check AWS_ENDPOINT_URL"
                               ) from None

    def _list(self, uri: str, delimiter: bool) -> list[dict]:
        bucket, prefix = self._split(uri.rstrip("/") + "/")
        pages = self._call(f"listing {uri}", lambda: list(self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, **({"Delimiter": "/"} if delimiter else {}))))
        return pages

    def list_dirs(self, uri: str) -> list[str]:
        pages = self._list(uri, True)
        return sorted(p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for page in pages
                      for p in page.get("CommonPrefixes", []))

    def list_files(self, uri: str) -> list[FileInfo]:
        bucket, _ = self._split(uri)
        out = [FileInfo(f"s3://{bucket}/{o['Key']}", o["Size"], o["ETag"].strip('"'))
               for page in self._list(uri, True) for o in page.get("Contents", [])
               if not o["Key"].rsplit("/", 1)[-1].startswith((".", "_"))]
        return sorted(out, key=lambda f: f.uri)

    def write_text(self, uri: str, text: str) -> None:
        bucket, key = self._split(uri)
        self._call(f"writing {uri}", self.client.put_object, Bucket=bucket, Key=key, Body=text.encode())

    def read_text(self, uri: str) -> str:
        bucket, key = self._split(uri)
        return self._call(f"reading {uri}", self.client.get_object, Bucket=bucket, Key=key)["Body"].read().decode()

    def delete(self, uri: str) -> None:
        bucket, key = self._split(uri)
        self._call(f"deleting {uri}", self.client.delete_object, Bucket=bucket, Key=key)

    def remove_partial_writes(self, uri: str, older_than_s: float) -> int:
        bucket, prefix = self._split(uri.rstrip("/") + "/")
        cutoff = time.time() - older_than_s
        pages = self._call(f"listing uploads under {uri}", lambda: list(
            self.client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)))
        stale = [u for page in pages for u in page.get("Uploads", []) if u["Initiated"].timestamp() < cutoff]
        for u in stale:
            self._call(f"aborting an upload of {u['Key']}", self.client.abort_multipart_upload, Bucket=bucket,
                       Key=u["Key"], UploadId=u["UploadId"])
        return len(stale)

    def read_versioned(self, uri: str) -> tuple[str, str] | None:
        bucket, key = self._split(uri)
        try:
            got = self._call(f"reading {uri}", self.client.get_object, Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None
        return got["Body"].read().decode(), got["ETag"]

    def _if(self, what: str, call, **kw) -> bool:
        """A conditional request: True when done, False when the store refused its condition (the
        object changed, is being changed, or is gone since it was read)."""
        from botocore.exceptions import ClientError

        def attempt() -> bool:
            try:
                call(**kw)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in _REFUSED:
                    return False
                raise
            return True

        return self._call(what, attempt)

    def write_if(self, uri: str, text: str, version: str | None) -> bool:
        """S3's conditional writes (``If-None-Match: *`` to create, ``If-Match: <etag>`` to replace)."""
        bucket, key = self._split(uri)
        cond = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        return self._if(f"writing {uri}", self.client.put_object, Bucket=bucket, Key=key, Body=text.encode(), **cond)

    @cached_property
    def _deletes_conditionally(self) -> bool:
        """Whether the store honours ``If-Match`` on DELETE (AWS since 2025-09; some S3-compatible stores
        ignore it, and would remove a lease another run has just taken): a conditional delete of a key
        that does not exist must be refused. Where it is not, ``delete_if`` removes nothing."""
        from botocore.exceptions import ClientError, ParamValidationError

        bucket, prefix = self._split(self.uri + "/")

        def probe() -> bool:
            try:
                self.client.delete_object(Bucket=bucket, Key=f"{prefix}.latentfeed-probe-{uuid.uuid4().hex}",
                                          IfMatch='"0"')
            except ClientError as e:
                code = e.response.get("Error", {}).get("Code")
                if code in _REFUSED:
                    return True
                if code in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                    return False
                raise
            except ParamValidationError:  # a botocore without conditional deletes
                return False
            return False  # deleted as if unconditional

        return self._call(f"checking conditional deletes on {self.uri}", probe)

    def delete_if(self, uri: str, version: str) -> bool:
        """S3's conditional delete (``If-Match: <etag>``); nothing on a store that ignores it."""
        bucket, key = self._split(uri)
        return self._deletes_conditionally and self._if(f"deleting {uri}", self.client.delete_object, Bucket=bucket,
                                                        Key=key, IfMatch=version)

    _answered = False

    def _check_answers(self) -> None:
        """One small listing of the prefix, once per instance. polars and deltalake would report a
        missing bucket, a wrong key or an unreachable endpoint as a multi-line object-store error
        (deltalake only after up to 3 minutes of retries); this says it in one line."""
        if not self._answered:
            bucket, prefix = self._split(self.uri + "/")
            self._call(f"checking {self.uri}", self.client.list_objects_v2, Bucket=bucket, Prefix=prefix, MaxKeys=1)
            self._answered = True

    def _credentials(self) -> ReadOnlyCredentials:
        """The chain's credentials of now, key, secret and token of one moment (the session keeps the
        chain's refreshable credentials: botocore renews a role's 15 to 10 minutes before they expire)."""
        from botocore.exceptions import NoCredentialsError

        creds = self._session.get_credentials()
        if creds is None:
            raise NoCredentialsError()
        return creds.get_frozen_credentials()

    def storage_options(self) -> dict[str, str]:
        """Options for polars/deltalake with the AWS chain's credentials of now, once the store has answered
        (else StorageError; the first call lists the prefix once). A client keeps the keys it was opened
        with, so ask again for each client opened, and open a long-lived one again when the options have
        changed: the chain renewed its credentials, and the old ones expire 10 minutes later or more."""
        self._check_answers()
        frozen = self._call(self.uri, self._credentials)
        opts = {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key,
                "aws_region": self._session.region_name or "us-east-1"}
        if frozen.token:
            opts["aws_session_token"] = frozen.token
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                opts["aws_allow_http"] = "true"
        return opts


def open_storage(uri: str) -> Storage:
    """The one place a URI picks its store."""
    scheme = urlparse(uri).scheme
    if scheme in ("s3", "s3a"):
        return S3Storage("s3://" + uri.split("://", 1)[1])
    if scheme in ("", "file"):
        return LocalStorage(uri)
    raise StorageError(f"{uri}: scheme {scheme!r} is not supported; use a local path, file:// or s3://")
