"""DICOMweb /rendered as Orthanc's DICOMweb plugin draws it (WadoRsRetrieveRendered): the
whole dynamics of the rescaled values unless a window function is asked for, colour as is, the
viewport's region fitted and centred in its size, MONOCHROME1 inverted, single-precision
arithmetic and Orthanc's float-to-byte rounding throughout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ..errors import ErrorCode, OrthancError
from .pixels import GRAY8, GRAY16, SGRAY16, Frame, decode_dataset, read_dataset
from .render import encode, number_pair, per_frame_item, resize_nearest, stretch

_F32 = np.float32


def _not_implemented() -> OrthancError:
    return OrthancError(ErrorCode.NOT_IMPLEMENTED)


@dataclass(frozen=True)
class WebRenderArgs:
    """The query of a DICOMweb /rendered: viewport (vw, vh[, sx, sy, sw, sh]), quality and
    window (center, width, linear | linear-exact | sigmoid)."""

    viewport: tuple[int | None, ...] = ()
    quality: int = 90
    window: tuple[float, float, str] | None = None

    @classmethod
    def parse(cls, query: dict[str, str]) -> WebRenderArgs:
        """ParameterOutOfRange on any malformed value, as the plugin."""
        viewport: tuple[int | None, ...] = ()
        if "viewport" in query:
            tokens = query["viewport"].split(",")
            if len(tokens) not in (2, 6):
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "viewport needs 2 or 6 numbers")
            values: list[int | None] = []
            for i, token in enumerate(tokens):
                if not token:
                    values.append(None)
                    continue
                try:
                    value = int(token) if i < 2 else _iround(np.float32(float(token)))
                except ValueError:
                    raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Bad viewport value: {token}") from None
                if i < 2 and value < 0:
                    raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, f"Negative viewport value: {token}")
                values.append(value)
            viewport = tuple(values)
        quality = 90
        if "quality" in query:
            try:
                quality = int(query["quality"])
            except ValueError:
                quality = 0
            if not 1 <= quality <= 100:
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "quality must be between 1 and 100")
        window = None
        if "window" in query:
            tokens = query["window"].split(",")
            if len(tokens) != 3 or tokens[2] not in ("linear", "linear-exact", "sigmoid"):
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "window needs center,width,function")
            try:
                window = (float(tokens[0]), float(tokens[1]), tokens[2])
            except ValueError:
                raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE, "window center and width must be floats") from None
        return cls(viewport, quality, window)


def _iround(v: np.float32) -> int:
    return int(np.floor(v + _F32(0.5)) if v >= 0 else np.ceil(v - _F32(0.5)))


def _to_gray8(values: np.ndarray) -> np.ndarray:
    """Orthanc's float-to-8-bit pixel: + 0.5, clamped, truncated (NaN gives 0)."""
    v = values.astype(_F32) + _F32(0.5)
    v = np.where(np.isnan(v), _F32(0), v)
    return np.clip(v, 0, 255).astype(np.uint8)


def _web_window(region: np.ndarray, args: WebRenderArgs, slope: float, intercept: float) -> np.ndarray:
    a = _F32(slope) * region.astype(_F32) + _F32(intercept)
    if args.window is None:  # the whole dynamics, after the rescale
        lo = _F32(slope) * _F32(region.min()) + _F32(intercept)
        hi = _F32(slope) * _F32(region.max()) + _F32(intercept)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = _F32(255) / (hi - lo)
            return _to_gray8((a - lo) * scale)
    c, w = _F32(args.window[0]), _F32(args.window[1])
    mode = args.window[2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if mode == "linear":
            xmin = c - _F32(0.5) - (w - _F32(1)) / _F32(2)
            xmax = c - _F32(0.5) + (w - _F32(1)) / _F32(2)
            scaling = _F32(255) / (w - _F32(1))
            offset = (_F32(255) * (-c + _F32(0.5) * w)) / (w - _F32(1))
            b = np.where(a <= xmin, _F32(0), np.where(a > xmax, _F32(255), a * scaling + offset))
        elif mode == "linear-exact":
            xmin, xmax = c - w / _F32(2), c + w / _F32(2)
            scaling = _F32(255) / w
            offset = (-c * _F32(255)) / w
            b = np.where(a <= xmin, _F32(0), np.where(a > xmax, _F32(255), a * scaling + offset))
        else:
            b = _F32(255) / (_F32(1) + np.exp(_F32(-4) * (a - c) / w))
    return _to_gray8(b)


def _rescale_for_web(ds: Dataset, index: int) -> tuple[float, float]:
    """(slope, intercept) as the plugin reads them: the file's, else the frame's."""
    found = number_pair(ds, "RescaleSlope", "RescaleIntercept")
    if found is None:
        found = number_pair(
            per_frame_item(ds, index, "PixelValueTransformationSequence"), "RescaleSlope", "RescaleIntercept"
        )
    return found if found is not None else (1.0, 0.0)


def web_rendered(data: bytes, index: int, args: WebRenderArgs, mime: str) -> bytes:
    """DICOMweb /rendered of frame `index` (0-based) as Orthanc's DICOMweb plugin draws it:
    the whole dynamics of the rescaled values unless a window is asked for, colour as is, the
    region of the viewport fitted and centred in its size, MONOCHROME1 inverted."""
    ds = read_dataset(data)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        # no frame at all: the plugin's frame index is out of range (400, not the core's 415)
        raise OrthancError(ErrorCode.PARAMETER_OUT_OF_RANGE)
    decoded = decode_dataset(ds, index)
    slope, intercept = _rescale_for_web(ds, index)
    source = decoded.pixels
    height, width = source.shape[:2]
    vp = args.viewport
    target_w = vp[0] if len(vp) > 0 and vp[0] is not None else width
    target_h = vp[1] if len(vp) > 1 and vp[1] is not None else height
    sx = abs(vp[2] or 0) if len(vp) > 2 else 0
    sy = abs(vp[3] or 0) if len(vp) > 3 else 0
    sw = vp[4] if len(vp) > 4 else None
    sh = vp[5] if len(vp) > 5 else None
    color = decoded.is_color
    shape = (target_h, target_w, 3) if color else (target_h, target_w)
    target = np.zeros(shape, np.uint8)
    if sx < width and sy < height:
        right = sx + abs(sw) if sw is not None and sx + abs(sw) < width else width
        bottom = sy + abs(sh) if sh is not None and sy + abs(sh) < height else height
        region = source[sy:bottom, sx:right]
        if region.size:
            if color:
                scaled = stretch(Frame(np.ascontiguousarray(region), decoded.format))
            elif decoded.format in (GRAY8, GRAY16, SGRAY16):
                scaled = _web_window(region, args, slope, intercept)
            else:
                raise _not_implemented()
            if sw is not None and sw < 0:
                scaled = scaled[:, ::-1]
            if sh is not None and sh < 0:
                scaled = scaled[::-1]
            if not color and str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
                scaled = 255 - scaled
            cw, ch = _F32(scaled.shape[1]), _F32(scaled.shape[0])
            r = min(_F32(target_w) / cw, _F32(target_h) / ch)
            fit_w = min(_iround(cw * r), target_w)
            fit_h = min(_iround(ch * r), target_h)
            resized = resize_nearest(np.ascontiguousarray(scaled), fit_w, fit_h)
            ox, oy = (target_w - fit_w) // 2, (target_h - fit_h) // 2
            target[oy : oy + fit_h, ox : ox + fit_w] = resized
    return encode(target, mime, args.quality)
