"""The CMoveScp scenario of scripts/bench: the server as C-MOVE SCP, sending one study to a
DCMTK storescp, timed from the C-MOVE request to its final response (DCMTK movescu as the
move SCU, the same command for both servers).

The receiver is `storescp --ignore`: it takes every C-STORE over the network (PDUs read and
acknowledged) but writes nothing, so the figure is the sender's speed, not the receiver's disk.
It keeps DCMTK's default maximum PDU (16 KB), like a stock storescp, but runs with the
environment variable TCP_NODELAY=1, which makes this Debian build of DCMTK disable Nagle's
algorithm: otherwise each small C-STORE response waits for the sender's delayed ACK (about 40 ms)
and both servers measure ~20 inst/s, the receiver's stall and not their own speed. The servers
keep their own environment (no TCP_NODELAY): Orthanc's DCMTK behaves as it does by default. Both the receiver
(STORE_SCP_AET) and the move SCU (MOVE_SCU_AET) are declared in every managed server's
DicomModalities (bench_servers.launch takes them as extra configuration). Each target gets its
own storescp: storescp serves one association at a time, and a server may keep its association
to the destination open for a while after a move (ours pools them), which would stall or fail
the other server's next move to a shared receiver.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from pathlib import Path
from typing import IO, Any

import dicomgen
from bench_servers import Target, log

STORESCP = "/usr/bin/storescp"
MOVESCU = "/usr/bin/movescu"
STORE_SCP_AET = "BENCHSTORESCP"
MOVE_SCU_AET = "BENCHMOVESCU"
SERVER_AET = "ORTHANC"
COMPLETED = re.compile(r"Completed Suboperations\s*:\s*(\d+)", re.IGNORECASE)
FAILED = re.compile(r"Failed Suboperations\s*:\s*(\d+)", re.IGNORECASE)


def modalities_config(scp_port: int) -> dict[str, Any]:
    """The configuration every managed server gets so that it accepts the move and knows the receiver."""
    return {
        "DicomAet": SERVER_AET,
        "DicomModalities": {
            "bench-storescp": [STORE_SCP_AET, "127.0.0.1", scp_port],
            "bench-movescu": [MOVE_SCU_AET, "127.0.0.1", scp_port],
        },
    }


def missing_tools() -> str | None:
    """Why CMoveScp cannot run here, or None."""
    missing = [p for p in (STORESCP, MOVESCU) if not Path(p).is_file()]
    return f"DCMTK {' and '.join(missing)} not installed" if missing else None


class StoreScp:
    """A `storescp --ignore` process that this script started (and stops)."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.proc: asyncio.subprocess.Process | None = None
        self.log_file: IO[bytes] | None = None

    async def start(self, within: float = 10.0) -> None:
        """Start it and wait (up to `within` seconds) until its port accepts connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_file = (self.directory / "storescp.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            STORESCP,
            "-aet",
            STORE_SCP_AET,
            "--ignore",
            str(self.port),
            cwd=self.directory,
            stdout=self.log_file,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ, TCP_NODELAY="1"),
        )
        deadline = time.monotonic() + within
        while True:
            if self.proc.returncode is not None:
                raise RuntimeError(f"storescp exited with status {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"storescp did not listen on port {self.port} within {within:.0f} s") from None
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Terminate it (our own process only)."""
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.returncode is None


class CMoveScenarios:
    """Mixed into Bench: uses its args, dataset, errors, metric(), scp_ports and workdir."""

    args: Any
    dataset: Any
    errors: list[str]
    scp_ports: dict[str, int]  # target name -> the port of its storescp
    workdir: Path
    store_scps: dict[str, StoreScp]

    def metric(self, *args: Any, **kwargs: Any) -> Any:  # provided by Bench
        raise NotImplementedError

    async def ensure_store_scp(self, t: Target) -> StoreScp:
        """The receiver of target `t`, started on first use (and again if it died)."""
        scp = self.store_scps.get(t.name)
        if scp is None or not scp.alive():
            if scp is not None:
                await scp.stop()
            port = self.scp_ports[t.name]
            scp = self.store_scps[t.name] = StoreScp(port, self.workdir / f"storescp-{t.name}")
            await scp.start()
            log(f"  storescp --ignore of {t.name} listening on {port} as {STORE_SCP_AET}")
        return scp

    async def stop_store_scps(self) -> None:
        """Stop every storescp started here."""
        for scp in self.store_scps.values():
            await scp.stop()

    async def sc_cmove_scp(self, t: Target, rep: int) -> None:
        """C-MOVE (study root, STUDY level) of one dataset study to storescp: instances/s."""
        if t.server is None:
            raise RuntimeError(f"{t.name}: its DICOM port is unknown (not a server started here)")
        await self.ensure_store_scp(t)
        ds = self.dataset
        p, s = ds.studies[rep % len(ds.studies)]
        n = ds.series_per_study * ds.instances_per_series
        cmd = [
            MOVESCU,
            "-d",
            "-S",
            "-aet",
            MOVE_SCU_AET,
            "-aec",
            SERVER_AET,
            "-aem",
            STORE_SCP_AET,
            "-to",
            str(int(self.args.request_timeout)),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={dicomgen.uid('study', p, s)}",
            "127.0.0.1",
            str(t.server.dicom_port),
        ]
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.args.request_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"movescu did not finish within {self.args.request_timeout:.0f} s") from None
        seconds = time.perf_counter() - t0
        text = out.decode(errors="replace")
        completed = [int(x) for x in COMPLETED.findall(text)]
        failed = [int(x) for x in FAILED.findall(text)]
        done = completed[-1] if completed else -1
        m = self.metric(
            t, "CMoveScp", f"study of {n} {ds.rows}x{ds.rows} to storescp --ignore", "inst/s", "higher", goal="ge"
        )
        m.info.update({"items": done, "expected": n})
        if failed and failed[-1]:
            m.info.setdefault("failed", []).append(failed[-1])
        if proc.returncode != 0 or done != n:
            tail = "\n".join(text.splitlines()[-8:])
            self.errors.append(f"{t.name} CMoveScp run {rep + 1}: exit {proc.returncode}, {done}/{n} sent:\n{tail}")
            return
        m.samples.append(n / seconds)
