"""The image scenario of scripts/bench (issue 18): decoded images of the dataset's instances.

Images: GET /instances/{id}/preview and /instances/{id}/rendered (PNG) of --previews random
instances, by 1 and by 4 concurrent clients: images per second. Meant for the --ct phase
(512x512 16-bit CT: `scripts/bench --compare --scenario Images --ct-scenario Images`), where
issue 18 asks for 3x Orthanc's figures; on the small dataset it measures 64x64 images. Every
answer is checked to be a PNG; both servers get the same paths (no answer is cached by ours,
so repeating a path costs the same as a new one).
"""

from __future__ import annotations

from typing import Any

from bench_http import Check
from bench_servers import Target

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(status: int, headers: dict[str, str], body: bytes) -> str | None:
    if status != 200:
        return f"HTTP {status} {body[:100]!r}"
    return None if body.startswith(PNG_MAGIC) else f"not a PNG: {headers.get('content-type')}"


class ImageScenarios:
    """Mixed into Bench: uses its args, dataset, random_paths() and rates()."""

    args: Any
    dataset: Any

    async def random_paths(self, t: Target, level: str, template: str, n: int, seed: int) -> list[str]:
        raise NotImplementedError  # provided by ReadScenarios

    async def rates(
        self, t: Target, scenario: str, paths: list[str], check: Check, unit: str, clients: tuple[int, ...] = (1, 4)
    ) -> None:
        raise NotImplementedError  # provided by ReadScenarios

    def metric(self, *args: Any, **kwargs: Any) -> Any:  # provided by Bench
        raise NotImplementedError

    async def sc_images(self, t: Target, rep: int) -> None:
        """/preview then /rendered of random instances, 1 and 4 clients: images/s."""
        size = f"{self.dataset.rows}x{self.dataset.rows}"
        for route, seed in (("preview", 3600), ("rendered", 3700)):
            scenario = f"Images /{route}"
            paths = await self.random_paths(t, "instances", "/instances/{}/" + route, self.args.previews, seed + rep)
            await self.rates(t, scenario, paths, _png, "images/s")
            for clients in ("1 client", "4 clients"):
                self.metric(t, scenario, f"rate, {clients}", "images/s", "higher").info["image"] = size
