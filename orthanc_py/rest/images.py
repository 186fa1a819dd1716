"""Decoded images of instances, frames and series: /preview, /rendered, /image-uint8|uint16|int16,
/matlab, /numpy, /frames/{n}/raw[.gz], /series/{id}/numpy.

Orthanc answers the image routes (preview, image-*, rendered) with bare statuses: an unknown
instance, a frame number that is not a number or out of range, a bad resize argument, or an
Accept header it cannot satisfy is an empty 404; an image it cannot decode or encode (and a
bad JPEG quality) an empty 415. The other routes answer Orthanc's JSON errors.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..core import files as core_files
from ..core.context import ServerContext
from ..errors import ErrorCode, OrthancError
from ..web.fastlane import FastAnswer, FastRoute
from ..web.responses import bool_arg
from .common import ctx_of, empty_404
from .resources import slice_order

if TYPE_CHECKING:
    from ..imaging import render

_MIMES = ("image/png", "image/jpeg", "image/x-portable-arbitrarymap")
_SILENT = (ErrorCode.PARAMETER_OUT_OF_RANGE, ErrorCode.UNKNOWN_RESOURCE)


def _accepted(header: str | None) -> str | None:
    """Orthanc's content negotiation among PNG (its default), JPEG and PAM: the best quality
    wins, the first registered type on a tie or a wildcard; None when nothing matches."""
    if not header or not header.strip():
        return _MIMES[0]
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(header.split(",")):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        q = 1.0
        for p in parts[1:]:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if media in ("*/*", "image/*"):
            candidate = _MIMES[0]
        elif media in _MIMES:
            candidate = media
        else:
            continue
        if q > 0 and (best is None or q > best[0]):
            best = (q, position, candidate)
    return None if best is None else best[2]


def _quality(request: web.Request) -> int:
    text = request.query.get("quality", "90")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise OrthancError(
            ErrorCode.BAD_REQUEST, f"Bad quality for a JPEG encoding (must be a number between 0 and 100): {text}"
        )
    return value


def _int_arg(request: web.Request, name: str) -> int:
    if name not in request.query:
        return 0
    try:
        value = int(request.query[name])
    except ValueError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Bad value for argument: {name}") from None
    if value < 0:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Argument cannot be negative: {name}")
    return value


def _float_arg(request: web.Request, name: str) -> float | None:
    if name not in request.query:
        return None
    try:
        return float(request.query[name])
    except ValueError:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Bad value for argument: {name}") from None


def _render_args(request: web.Request) -> render.RenderArgs:
    from ..imaging import render

    return render.RenderArgs(
        _float_arg(request, "window-center"),
        _float_arg(request, "window-width"),
        _int_arg(request, "width"),
        _int_arg(request, "height"),
        bool_arg(request, "smooth"),
    )


def _image_answer(
    data: bytes, frame: int, mode: str, request: web.Request, accept: str | None
) -> tuple[bytes, str] | None:
    """Worker thread: the encoded image and its MIME type, None when no type of the Accept
    header can be given (Orthanc's empty 404). Raises OrthancError. Orthanc decodes first,
    then reads the arguments, then negotiates: the errors come in that order."""
    from ..imaging import pixels, render

    deferred: OrthancError | None = None
    args, quality = None, 90
    try:
        args = _render_args(request) if mode == "rendered" else None
        quality = _quality(request)
    except OrthancError as err:
        deferred = err
    if deferred is None and accept is not None:
        try:  # most files: native pixels read straight from the bytes, without pydicom
            native = render.native_image_answer(data, frame, mode, args, accept, quality)
        except (OrthancError, ValueError, IndexError):
            native = None  # the pydicom path below gives the answer or Orthanc's error
        if native is not None:
            return native, accept
    ds = pixels.read_dataset(data)
    decoded = pixels.decode_dataset(ds, frame)
    if deferred is not None:
        raise deferred
    if accept is None:
        return None
    tags = render.FrameTags.of(ds, frame)
    return render.image_answer(decoded, tags, mode, args, accept, quality), accept


def _frame_of(request: web.Request) -> int | None:
    text = request.match_info.get("frame", "0")
    return int(text) if text.isdigit() else None


def _image_route(mode: str) -> Callable[[web.Request], object]:
    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = ctx_of(request)
        frame = _frame_of(request)
        if frame is None:
            return empty_404()
        accept = _accepted(request.headers.get("Accept"))
        try:
            _att, data = await core_files.dicom_file(ctx, request.match_info["id"])
            assert data is not None
            if accept == "image/png" and not request.query:
                small = _small_answer(data, frame, mode)
                if small is not None:
                    return web.Response(body=small, content_type="image/png")  # as fast_preview does
            answer = await ctx.run(_image_answer, data, frame, mode, request, accept)
        except OrthancError as err:
            return empty_404() if err.code in _SILENT else web.Response(status=415)
        except Exception:
            return web.Response(status=415)
        if answer is None:
            return empty_404()
        body, mime = answer
        return web.Response(body=body, content_type=mime)

    handler.__doc__ = f"GET /instances/{{id}}[/frames/{{n}}]/{mode}: Orthanc's {mode} image of a frame."
    return handler


def _small_answer(data: bytes, frame: int, mode: str) -> bytes | None:
    """The PNG of a frame of a small native file, drawn where it is read (no worker hop:
    ~0.3 ms of work for 64x64); None for any other file or when it cannot be drawn here (the
    worker thread then gives the answer, or Orthanc's error)."""
    from ..imaging import render

    try:
        return render.small_image_answer(data, frame, mode, render.RenderArgs(), "image/png")
    except (OrthancError, ValueError, IndexError):
        return None


_PNG_HEAD = b"Content-Type: image/png\r\n"


def fast_preview(ctx: ServerContext) -> FastRoute:
    """GET /instances/{id}/preview in the HTTP fast lane: the PNG of a small native file in the
    page cache, as the preview handler draws it (anything else: that handler)."""

    def route(public_id: str, accept: str | None) -> FastAnswer | None:
        if _accepted(accept) != "image/png":
            return None
        try:
            _att, data = core_files.dicom_file_now(ctx, public_id)
        except (OrthancError, BlockingIOError):
            return None
        small = None if data is None else _small_answer(data, 0, "preview")
        return None if small is None else (_PNG_HEAD, small)

    return route


# --- matlab, numpy, raw -------------------------------------------------------------------


async def _instance_data(ctx: ServerContext, public_id: str) -> bytes:
    _att, data = await core_files.dicom_file(ctx, public_id)
    assert data is not None
    return data


async def matlab(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}[/frames/{n}]/matlab: the frame as an Octave/Matlab matrix."""
    from ..imaging import pixels, render

    ctx = ctx_of(request)
    frame = _frame_of(request)
    if frame is None:
        return empty_404()
    data = await _instance_data(ctx, request.match_info["id"])
    body = await ctx.run(lambda: render.matlab(pixels.decode(data, frame)))
    return web.Response(body=body, content_type="text/plain")


async def raw_frame(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/frames/{n}/raw and raw.gz: the frame's bytes as stored."""
    from ..imaging import pixels

    ctx = ctx_of(request)
    frame = _frame_of(request)
    if frame is None:
        return empty_404()
    data = await _instance_data(ctx, request.match_info["id"])
    compress = request.path.endswith(".gz")

    def work() -> tuple[bytes, str]:
        body, mime = pixels.raw_frame(pixels.read_dataset(data), frame)
        if compress:
            return gzip.compress(body, 6), "application/gzip"
        return body, mime

    body, mime = await ctx.run(work)
    return web.Response(body=body, content_type=mime)


def _numpy_options(request: web.Request) -> tuple[bool, bool]:
    return bool_arg(request, "compress", False), bool_arg(request, "rescale", True)


class _NumpyVolume:
    """Orthanc's NumpyVisitor: frames of one size and format, one header for all."""

    def __init__(self, depth: int, rescale: bool) -> None:
        self.depth = depth
        self.rescale = rescale
        self.first: tuple[int, int, str] | None = None
        self.body: list[bytes] = []

    def add(self, data: bytes, frames: range) -> None:
        from ..imaging import pixels, render

        ds = pixels.read_dataset(data)
        for index in frames:
            decoded = pixels.decode_dataset(ds, index)
            fmt, body = render.numpy_pixels(decoded, ds, index, self.rescale)
            height, width = decoded.pixels.shape[:2]
            if self.first is None:
                self.first = (height, width, fmt)
            elif self.first[:2] != (height, width):
                raise OrthancError(
                    ErrorCode.INCOMPATIBLE_IMAGE_SIZE, "The size of the frames varies across the instance(s)"
                )
            elif self.first[2] != fmt:
                raise OrthancError(
                    ErrorCode.INCOMPATIBLE_IMAGE_FORMAT, "The pixel format of the frames varies across the instance(s)"
                )
            self.body.append(body)

    def answer(self, compress: bool) -> bytes:
        from ..imaging import render

        if self.first is None:
            raise OrthancError(ErrorCode.BAD_SEQUENCE_OF_CALLS)
        height, width, fmt = self.first
        return render.numpy_file(render.numpy_header(self.depth, height, width, fmt), self.body, compress)


async def numpy_frame(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/frames/{n}/numpy: one frame, (height, width, channels)."""
    ctx = ctx_of(request)
    compress, rescale = _numpy_options(request)
    frame = _frame_of(request)
    if frame is None:
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, 'Expected an unsigned integer for the "frame" argument')
    data = await _instance_data(ctx, request.match_info["id"])

    def work() -> bytes:
        volume = _NumpyVolume(0, rescale)
        volume.add(data, range(frame, frame + 1))
        return volume.answer(compress)

    return web.Response(body=await ctx.run(work), content_type="application/octet-stream")


async def numpy_instance(request: web.Request) -> web.StreamResponse:
    """GET /instances/{id}/numpy: every frame, (frames, height, width, channels)."""
    from ..imaging import pixels

    ctx = ctx_of(request)
    compress, rescale = _numpy_options(request)
    data = await _instance_data(ctx, request.match_info["id"])

    def work() -> bytes:
        count = pixels.frames_count(pixels.read_dataset(data))
        if count == 0:
            raise OrthancError(ErrorCode.BAD_FILE_FORMAT, "Empty DICOM instance")
        volume = _NumpyVolume(count, rescale)
        volume.add(data, range(count))
        return volume.answer(compress)

    return web.Response(body=await ctx.run(work), content_type="application/octet-stream")


async def numpy_series(request: web.Request) -> web.StreamResponse:
    """GET /series/{id}/numpy: the frames of every instance in slice order."""
    ctx = ctx_of(request)
    compress, rescale = _numpy_options(request)
    items, _volume = await slice_order(ctx, request.match_info["id"])
    depth = sum(i.frames for i in items)
    files = await core_files.files_by_public_id(ctx, [i.id for i in items])

    def work() -> bytes:
        volume = _NumpyVolume(depth, rescale)
        for item in items:
            volume.add(core_files.read(ctx, files[item.id]), range(item.frames))
        return volume.answer(compress)

    return web.Response(body=await ctx.run(work), content_type="application/octet-stream")


def setup(router: web.UrlDispatcher) -> None:
    # the modes are imaging.render's PREVIEW, UINT8, UINT16, INT16 (imported on the first image)
    for prefix in ("/instances/{id}", "/instances/{id}/frames/{frame}"):
        router.add_get(prefix + "/preview", _image_route("preview"))  # type: ignore[arg-type]
        router.add_get(prefix + "/rendered", _image_route("rendered"))  # type: ignore[arg-type]
        router.add_get(prefix + "/image-uint8", _image_route("uint8"))  # type: ignore[arg-type]
        router.add_get(prefix + "/image-uint16", _image_route("uint16"))  # type: ignore[arg-type]
        router.add_get(prefix + "/image-int16", _image_route("int16"))  # type: ignore[arg-type]
        router.add_get(prefix + "/matlab", matlab)
    router.add_get("/instances/{id}/numpy", numpy_instance)
    router.add_get("/instances/{id}/frames/{frame}/numpy", numpy_frame)
    router.add_get("/instances/{id}/frames/{frame}/raw", raw_frame)
    router.add_get("/instances/{id}/frames/{frame}/raw.gz", raw_frame)
    router.add_get("/series/{id}/numpy", numpy_series)
