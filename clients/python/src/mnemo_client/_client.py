"""The client: each operation is described once (method, path, body, how to
read the answer) and run by a synchronous or an asynchronous transport."""

from __future__ import annotations

import ssl
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generic,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import httpx

T = TypeVar("T")
Json = Dict[str, Any]


# --- answers ---------------------------------------------------------------


@dataclass(frozen=True)
class MergedInput:
    """One input of a consolidation, as it was."""

    id: str
    content: str
    confidence: float
    created_at_ms: int
    tags: List[str]

    @classmethod
    def from_json(cls, j: Json) -> "MergedInput":
        return cls(j["id"], j["content"], j["confidence"], j["created_at_ms"], list(j["tags"]))


@dataclass(frozen=True)
class Memory:
    """A memory. ``confidence`` is what it is worth now: the
    ``written_confidence``, lowered by decay while nobody recalls it."""

    id: str
    content: str
    confidence: float
    created_at_ms: int
    tags: List[str]
    merged_from: List[MergedInput] = field(default_factory=list)
    written_confidence: Optional[float] = None
    recalled_at_ms: Optional[int] = None

    @classmethod
    def from_json(cls, j: Json) -> "Memory":
        return cls(
            j["id"],
            j["content"],
            j["confidence"],
            j["created_at_ms"],
            list(j["tags"]),
            [MergedInput.from_json(i) for i in j.get("merged_from", [])],
            j.get("written_confidence"),
            j.get("recalled_at_ms"),
        )


@dataclass(frozen=True)
class Scored(Memory):
    """A memory with its score for a cue (higher is better)."""

    score: float = 0.0
    space: Optional[str] = None
    served_by: Optional[str] = None

    @classmethod
    def from_json(cls, j: Json) -> "Scored":
        m = Memory.from_json(j)
        return cls(
            m.id,
            m.content,
            m.confidence,
            m.created_at_ms,
            m.tags,
            m.merged_from,
            m.written_confidence,
            m.recalled_at_ms,
            j["score"],
            j.get("space"),
            j.get("served_by"),
        )


@dataclass(frozen=True)
class Remembered:
    id: str
    space: str
    served_by: str
    created: bool

    @classmethod
    def from_json(cls, j: Json) -> "Remembered":
        return cls(j["id"], j["space"], j["served_by"], j["created"])


@dataclass(frozen=True)
class Recalled:
    space: str
    served_by: str
    fallback: bool
    degraded: bool
    memories: List[Scored]

    @classmethod
    def from_json(cls, j: Json) -> "Recalled":
        return cls(
            j["space"],
            j["served_by"],
            j["fallback"],
            j["degraded"],
            [Scored.from_json(m) for m in j["memories"]],
        )


@dataclass(frozen=True)
class Forgot:
    space: str
    id: str
    served_by: str
    existed: bool

    @classmethod
    def from_json(cls, j: Json) -> "Forgot":
        return cls(j["space"], j["id"], j["served_by"], j["existed"])


@dataclass(frozen=True)
class Got:
    """A memory by id; `merged_into` is set when consolidation merged it."""

    space: str
    served_by: str
    memory: Optional[Memory]
    merged_into: Optional[Memory]

    @classmethod
    def from_json(cls, j: Json) -> "Got":
        def opt(k: str) -> Optional[Memory]:
            return Memory.from_json(j[k]) if k in j else None

        return cls(j["space"], j["served_by"], opt("memory"), opt("merged_into"))


@dataclass(frozen=True)
class Page:
    space: str
    served_by: str
    memories: List[Json]
    next_cursor: str

    @classmethod
    def from_json(cls, j: Json) -> "Page":
        return cls(j["space"], j["served_by"], list(j["memories"]), j["next_cursor"])


@dataclass(frozen=True)
class Queried:
    memories: List[Scored]
    partial: bool
    failed_spaces: List[str]
    failures: List[Json]
    degraded: bool

    @classmethod
    def from_json(cls, j: Json) -> "Queried":
        return cls(
            [Scored.from_json(m) for m in j["memories"]],
            j["partial"],
            list(j["failed_spaces"]),
            list(j["failures"]),
            j["degraded"],
        )


@dataclass(frozen=True)
class Consolidated:
    space: str
    served_by: str
    merged: List[Json]
    memories_before: int
    memories_after: int
    dry_run: bool
    # Memories whose confidence decayed: [{"id": ..., "confidence": ...}].
    decayed: List[Json] = field(default_factory=list)

    @classmethod
    def from_json(cls, j: Json) -> "Consolidated":
        return cls(
            j["space"],
            j["served_by"],
            list(j["merged"]),
            j["memories_before"],
            j["memories_after"],
            j["dry_run"],
            list(j.get("decayed", [])),
        )


@dataclass(frozen=True)
class SpaceInfo:
    space: str
    primary: str
    replicas: List[str]
    memories: int
    forgotten: int
    counted_by: str

    @classmethod
    def from_json(cls, j: Json) -> "SpaceInfo":
        return cls(
            j["space"],
            j["primary"],
            list(j["replicas"]),
            j["memories"],
            j["forgotten"],
            j["counted_by"],
        )


# --- errors ----------------------------------------------------------------


class MnemoError(Exception):
    """A refusal or failure: the gRPC code name, the HTTP status and the
    node's message."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class InvalidArgument(MnemoError):
    pass


class NotFound(MnemoError):
    pass


class AlreadyExists(MnemoError):
    """Another memory already has this id in the space."""


class PermissionDenied(MnemoError):
    pass


class Unauthenticated(MnemoError):
    pass


class ResourceExhausted(MnemoError):
    pass


class FailedPrecondition(MnemoError):
    pass


class Unavailable(MnemoError):
    pass


class DeadlineExceeded(MnemoError):
    pass


_ERRORS = {
    "INVALID_ARGUMENT": InvalidArgument,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "PERMISSION_DENIED": PermissionDenied,
    "UNAUTHENTICATED": Unauthenticated,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "FAILED_PRECONDITION": FailedPrecondition,
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


def _error(code: str, message: str, status: int) -> MnemoError:
    return _ERRORS.get(code, MnemoError)(code, message, status)


def _answer(response: httpx.Response, parse: Callable[[Json], T]) -> T:
    if response.is_success:
        return parse(response.json())
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "UNKNOWN", response.text
    raise _error(code, message, response.status_code)


#: A memory for ``remember_many``: its content, or a dict with ``content``
#: and any of ``id``, ``confidence``, ``tags``, ``embedding``.
BatchItem = Union[str, Mapping[str, Any]]


def _batch_results(j: Json) -> List[Union[Remembered, MnemoError]]:
    """Each memory's outcome: a ``Remembered``, or the error (not raised)
    that a single write would have raised."""
    out: List[Union[Remembered, MnemoError]] = []
    for r in j["results"]:
        if "remembered" in r:
            out.append(Remembered.from_json(r["remembered"]))
        else:
            e = r["error"]
            out.append(_error(e["code"], e["message"], e["status"]))
    return out


# --- operations ------------------------------------------------------------


@dataclass(frozen=True)
class _Op(Generic[T]):
    method: str
    path: str
    parse: Callable[[Json], T]
    body: Optional[Json] = None
    params: Optional[Dict[str, str]] = None


def _drop_none(d: Json) -> Json:
    return {k: v for k, v in d.items() if v is not None}


def _cue(
    cue: str,
    k: Optional[int],
    min_confidence: Optional[float],
    tags: Sequence[str],
    cue_embedding: Optional[Sequence[float]],
    include_unmatched: bool,
) -> Json:
    return _drop_none(
        {
            "cue": cue,
            "k": k,
            "min_confidence": min_confidence,
            "tags": list(tags),
            "cue_embedding": list(cue_embedding) if cue_embedding is not None else None,
            "include_unmatched": include_unmatched,
        }
    )


def _seg(s: str) -> str:
    """`s` as one path segment. Dots are escaped too, so that "." and ".."
    stay names instead of being resolved away by the URL library."""
    return quote(s, safe="").replace(".", "%2E")


class _Ops:
    """Builds the request of every operation; the transports run them."""

    @staticmethod
    def remember(
        space: str,
        content: str,
        id: Optional[str] = None,
        confidence: Optional[float] = None,
        tags: Sequence[str] = (),
        embedding: Optional[Sequence[float]] = None,
        ack: str = "primary",
    ) -> _Op[Remembered]:
        body = _drop_none(
            {
                "content": content,
                "id": id,
                "confidence": confidence,
                "tags": list(tags),
                "embedding": list(embedding) if embedding is not None else None,
                "ack": ack,
            }
        )
        return _Op("POST", f"/v1/spaces/{_seg(space)}/memories", Remembered.from_json, body)

    @staticmethod
    def remember_many(
        space: str, memories: Iterable[BatchItem], ack: str = "primary"
    ) -> _Op[List[Union[Remembered, MnemoError]]]:
        items = [{"content": m} if isinstance(m, str) else dict(m) for m in memories]
        body = {"memories": items, "ack": ack}
        path = f"/v1/spaces/{_seg(space)}/memories:batch"
        return _Op("POST", path, _batch_results, body)

    @staticmethod
    def recall(space: str, cue: str, **kw: Any) -> _Op[Recalled]:
        return _Op("POST", f"/v1/spaces/{_seg(space)}/recall", Recalled.from_json, _cue(cue, **kw))

    @staticmethod
    def query(spaces: Sequence[str], cue: str, **kw: Any) -> _Op[Queried]:
        body = dict(_cue(cue, **kw), spaces=list(spaces))
        return _Op("POST", "/v1/query", Queried.from_json, body)

    @staticmethod
    def forget(space: str, id: str, ack: str = "primary") -> _Op[Forgot]:
        path = f"/v1/spaces/{_seg(space)}/memories/{_seg(id)}"
        return _Op("DELETE", path, Forgot.from_json, params={"ack": ack})

    @staticmethod
    def get(space: str, id: str) -> _Op[Got]:
        return _Op("GET", f"/v1/spaces/{_seg(space)}/memories/{_seg(id)}", Got.from_json)

    @staticmethod
    def list(space: str, cursor: str = "", limit: Optional[int] = None) -> _Op[Page]:
        params = _drop_none(
            {"cursor": cursor or None, "limit": str(limit) if limit is not None else None}
        )
        return _Op("GET", f"/v1/spaces/{_seg(space)}/memories", Page.from_json, params=params)

    @staticmethod
    def consolidate(
        space: str, dry_run: bool = False, threshold: Optional[float] = None
    ) -> _Op[Consolidated]:
        body = _drop_none({"dry_run": dry_run, "threshold": threshold})
        return _Op("POST", f"/v1/spaces/{_seg(space)}/consolidate", Consolidated.from_json, body)

    @staticmethod
    def space(space: str) -> _Op[SpaceInfo]:
        return _Op("GET", f"/v1/spaces/{_seg(space)}", SpaceInfo.from_json)

    @staticmethod
    def status() -> _Op[Json]:
        return _Op("GET", "/v1/status", dict)


# --- transports ------------------------------------------------------------

Cert = Union[str, Tuple[str, str]]


def _settings(
    url: str, ca: Optional[str], cert: Optional[Cert], token: Optional[str], timeout: float
) -> Json:
    if token and not url.startswith("https://"):
        raise ValueError("a token travels over https:// only (and an --insecure node takes none)")
    if cert is not None and ca is None:
        raise ValueError("a client certificate needs the cluster's CA too: pass ca=")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    verify: Union[bool, ssl.SSLContext] = True
    if ca is not None:
        verify = ssl.create_default_context(cafile=ca)
        if cert is not None:
            crt, key = (cert, None) if isinstance(cert, str) else cert
            verify.load_cert_chain(crt, key)
    return {"headers": headers, "verify": verify, "timeout": timeout}


class Mnemo:
    """A synchronous client of one node's HTTP API.

    ``Mnemo("https://host:port", ca="ca.crt", token="mnemo1...")`` (or
    ``cert=("client.crt", "client.key")``); ``Mnemo("http://127.0.0.1:9401")``
    for an ``--insecure`` node.
    """

    def __init__(
        self,
        url: str,
        *,
        ca: Optional[str] = None,
        cert: Optional[Cert] = None,
        token: Optional[str] = None,
        timeout: float = 10.0,
    ) -> None:
        self._http = httpx.Client(base_url=url, **_settings(url, ca, cert, token, timeout))

    def _run(self, op: _Op[T]) -> T:
        r = self._http.request(op.method, op.path, json=op.body, params=op.params)
        return _answer(r, op.parse)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Mnemo":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def remember(self, space: str, content: str, **kw: Any) -> Remembered:
        """Write a memory (``id``, ``confidence``, ``tags``, ``embedding``,
        ``ack="quorum"``)."""
        return self._run(_Ops.remember(space, content, **kw))

    def remember_many(
        self, space: str, memories: Iterable[BatchItem], *, ack: str = "primary"
    ) -> List[Union[Remembered, MnemoError]]:
        """Write up to 1000 memories (at most 4 MiB of JSON) in one
        request, within one deadline. Each is handled as a
        single ``remember`` and answered on its own, in order: a
        ``Remembered``, or the error a single write would have raised (one
        refused memory does not stop the others)."""
        return self._run(_Ops.remember_many(space, memories, ack))

    def recall(
        self,
        space: str,
        cue: str = "",
        *,
        k: Optional[int] = None,
        min_confidence: Optional[float] = None,
        tags: Sequence[str] = (),
        cue_embedding: Optional[Sequence[float]] = None,
        include_unmatched: bool = False,
    ) -> Recalled:
        """A space's memories ranked against a cue, best first."""
        return self._run(
            _Ops.recall(
                space,
                cue,
                k=k,
                min_confidence=min_confidence,
                tags=tags,
                cue_embedding=cue_embedding,
                include_unmatched=include_unmatched,
            )
        )

    def query(
        self,
        spaces: Sequence[str],
        cue: str = "",
        *,
        k: Optional[int] = None,
        min_confidence: Optional[float] = None,
        tags: Sequence[str] = (),
        cue_embedding: Optional[Sequence[float]] = None,
        include_unmatched: bool = False,
    ) -> Queried:
        """One cue over several spaces."""
        return self._run(
            _Ops.query(
                spaces,
                cue,
                k=k,
                min_confidence=min_confidence,
                tags=tags,
                cue_embedding=cue_embedding,
                include_unmatched=include_unmatched,
            )
        )

    def forget(self, space: str, id: str, *, ack: str = "primary") -> Forgot:
        return self._run(_Ops.forget(space, id, ack))

    def get(self, space: str, id: str) -> Got:
        """A memory by id; raises ``NotFound`` when there is none."""
        return self._run(_Ops.get(space, id))

    def list(self, space: str, cursor: str = "", limit: Optional[int] = None) -> Page:
        return self._run(_Ops.list(space, cursor, limit))

    def memories(self, space: str) -> Iterator[Json]:
        """Every memory of a space, in id order, a page at a time."""
        cursor = ""
        while True:
            page = self.list(space, cursor, 1000)
            yield from page.memories
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def consolidate(
        self, space: str, *, dry_run: bool = False, threshold: Optional[float] = None
    ) -> Consolidated:
        return self._run(_Ops.consolidate(space, dry_run, threshold))

    def space(self, space: str) -> SpaceInfo:
        return self._run(_Ops.space(space))

    def status(self) -> Json:
        return self._run(_Ops.status())


class AsyncMnemo:
    """The same client for asyncio: every method is awaited."""

    def __init__(
        self,
        url: str,
        *,
        ca: Optional[str] = None,
        cert: Optional[Cert] = None,
        token: Optional[str] = None,
        timeout: float = 10.0,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=url, **_settings(url, ca, cert, token, timeout))

    async def _run(self, op: _Op[T]) -> T:
        r = await self._http.request(op.method, op.path, json=op.body, params=op.params)
        return _answer(r, op.parse)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncMnemo":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def remember(self, space: str, content: str, **kw: Any) -> Remembered:
        return await self._run(_Ops.remember(space, content, **kw))

    async def remember_many(
        self, space: str, memories: Iterable[BatchItem], *, ack: str = "primary"
    ) -> List[Union[Remembered, MnemoError]]:
        return await self._run(_Ops.remember_many(space, memories, ack))

    async def recall(
        self,
        space: str,
        cue: str = "",
        *,
        k: Optional[int] = None,
        min_confidence: Optional[float] = None,
        tags: Sequence[str] = (),
        cue_embedding: Optional[Sequence[float]] = None,
        include_unmatched: bool = False,
    ) -> Recalled:
        return await self._run(
            _Ops.recall(
                space,
                cue,
                k=k,
                min_confidence=min_confidence,
                tags=tags,
                cue_embedding=cue_embedding,
                include_unmatched=include_unmatched,
            )
        )

    async def query(
        self,
        spaces: Sequence[str],
        cue: str = "",
        *,
        k: Optional[int] = None,
        min_confidence: Optional[float] = None,
        tags: Sequence[str] = (),
        cue_embedding: Optional[Sequence[float]] = None,
        include_unmatched: bool = False,
    ) -> Queried:
        return await self._run(
            _Ops.query(
                spaces,
                cue,
                k=k,
                min_confidence=min_confidence,
                tags=tags,
                cue_embedding=cue_embedding,
                include_unmatched=include_unmatched,
            )
        )

    async def forget(self, space: str, id: str, *, ack: str = "primary") -> Forgot:
        return await self._run(_Ops.forget(space, id, ack))

    async def get(self, space: str, id: str) -> Got:
        return await self._run(_Ops.get(space, id))

    async def list(self, space: str, cursor: str = "", limit: Optional[int] = None) -> Page:
        return await self._run(_Ops.list(space, cursor, limit))

    async def memories(self, space: str) -> AsyncIterator[Json]:
        cursor = ""
        while True:
            page = await self.list(space, cursor, 1000)
            for m in page.memories:
                yield m
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def consolidate(
        self, space: str, *, dry_run: bool = False, threshold: Optional[float] = None
    ) -> Consolidated:
        return await self._run(_Ops.consolidate(space, dry_run, threshold))

    async def space(self, space: str) -> SpaceInfo:
        return await self._run(_Ops.space(space))

    async def status(self) -> Json:
        return await self._run(_Ops.status())
