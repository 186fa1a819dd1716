"""Types of the C helper `_lane.c` (routes of the HTTP fast lane in one C call each)."""

def library() -> str | None: ...

class FileRoute:
    def __init__(
        self,
        connection: object,
        database: bytes,
        root: bytes,
        content_type: int,
        level: int,
        plain: int,
        max_size: int,
        before: bytes,
        after: bytes,
    ) -> None: ...
    def answer(self, public_id: bytes, tail: bytes) -> bytes | None: ...
    def close(self) -> None: ...

class ResourceRoute:
    def __init__(
        self, connection: object, database: bytes, statement: bytes, level: int, names: dict[int, tuple[bytes, int]]
    ) -> None: ...
    def render(self, public_id: bytes, stable: bool) -> bytes | None: ...
    def close(self) -> None: ...
