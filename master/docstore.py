"""A JSON document in the bucket that only the master writes: read-modify-write with
``if_generation_match`` (a concurrent change is detected by the generation precondition and the
change is applied again on the new document). The policy and the annotations are two."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from modelsync.store import NotFound, PreconditionFailed, RemoteStore

T = TypeVar("T")


class Conflict(Exception):
    pass


class DocStore(Generic[T]):
    def __init__(
        self,
        store: RemoteStore,
        name: str,
        parse: Callable[[bytes], T],
        dump: Callable[[T], bytes],
        empty: Callable[[], T],
        attempts: int = 8,
        bucket: str = "",
        on_generation: Callable[[int], None] | None = None,
    ) -> None:
        """``on_generation`` hears every generation of the document read or written (0: none)."""
        self.store = store
        self.on_generation = on_generation
        self.name = name
        self.uri = f"gs://{bucket}/{name}" if bucket else name
        self._parse, self._dump, self._empty = parse, dump, empty
        self.attempts = attempts

    def parse(self, body: bytes, generation: int) -> T:
        """The document from its body (a subclass may say more about a malformed one)."""
        return self._parse(body)

    def _seen(self, generation: int) -> None:
        if self.on_generation is not None:
            self.on_generation(generation)

    def read(self) -> tuple[T, int]:
        """The document and its generation (0: no object yet)."""
        info = self.store.stat(self.name)
        self._seen(0 if info is None else info.generation)
        if info is None:
            return self._empty(), 0
        try:
            body = self.store.read(self.name, generation=info.generation)
        except NotFound:  # replaced between the stat and the read: read again
            return self.read()
        return self.parse(body, info.generation), info.generation

    def update(self, change: Callable[[T], T]) -> tuple[T, int, bool]:
        """Apply ``change`` atomically. Returns (document, generation, written?)."""
        for _attempt in range(self.attempts):
            doc, generation = self.read()
            new = change(doc)
            if new == doc:
                return doc, generation, False
            try:
                info = self.store.write(
                    self.name,
                    self._dump(new),
                    if_generation_match=generation,
                    content_type="application/json",
                )
            except PreconditionFailed:
                continue  # someone else wrote first: apply the change to their version
            self._seen(info.generation)
            return new, info.generation, True
        raise Conflict(f"{self.uri} changed concurrently {self.attempts} times; try again")
