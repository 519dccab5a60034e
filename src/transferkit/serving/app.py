"""The HTTP service (FastAPI): ``POST /predict``, ``GET /health``, ``GET /info``, and the OpenAPI description.

``POST /predict`` takes

- for image models, ``multipart/form-data`` with one or more file parts named ``files`` (several = a batch);
  ``?top_k=N`` sets how many classes each prediction lists;
- for text models, ``application/json`` ``{"texts": ["...", ...], "top_k": N}``.

It answers ``{"model", "runtime", "predictions": [{"index", "input", "label", "probability", "probabilities",
"top_k"}]}``. The service reads only what a client sends: no field names a path, a URL or anything on the server.
Every limit (request size, file size, image pixels, batch size, text length) is checked before the model runs and
answered with a 4xx whose ``detail`` names the input and the limit:

======  ==========================================================================================
code    when
======  ==========================================================================================
400     the body is not valid JSON, or the multipart body cannot be parsed
413     request body, a file, an image's pixels, a text's length or the batch is over its limit
415     wrong content type (an image model given JSON, a text model given files, anything else)
422     a field is missing, unknown, of the wrong type, or an image cannot be decoded
======  ==========================================================================================
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
import warnings
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from transferkit._version import __version__
from transferkit.serving.settings import ServeConfig, from_environment

log = logging.getLogger("transferkit")


class TextRequest(BaseModel):
    """The JSON body of ``POST /predict`` for text models."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(..., description="texts to classify (one prediction each, in order)")
    top_k: int | None = Field(None, ge=1, description="classes listed per prediction (default: the service's)")


class ClassProbability(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    index: int = Field(..., description="position of the input in the request")
    input: str = Field(..., description="the uploaded file's name, or texts[i]")
    label: str = Field(..., description="the most likely class")
    probability: float = Field(..., description="its probability")
    probabilities: dict[str, float] = Field(..., description="every class's probability")
    top_k: list[ClassProbability] = Field(..., description="the k most likely classes, most likely first")


class PredictResponse(BaseModel):
    model: str
    runtime: str
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    detail: str


_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in (
    (400, "malformed body (invalid JSON or multipart)"),
    (413, "over a limit: request size, file size, image pixels, batch size or text length"),
    (415, "wrong content type for this model"),
    (422, "missing, unknown or wrongly typed field, or an undecodable image"),
)}

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "Image models: multipart/form-data with file parts named `files`. Text models: JSON.",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
            "application/json": {"schema": {"$ref": "#/components/schemas/TextRequest"}},
        },
    }
}


def _fail(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes, whether or not Content-Length is sent."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _fail(400, f"Content-Length header is not a number ({declared!r}).") from None
        if size > limit:
            raise _fail(413, f"request body is {size:,} bytes; the limit is {limit:,} bytes.")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _fail(413, f"request body is over the limit of {limit:,} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache of the body: form parsing below reads it from there
    return body


def _decode_image(data: bytes, name: str, settings: ServeConfig):
    """Bytes of one uploaded file as an RGB image; 413 / 422 naming the file when it cannot be used."""
    from PIL import Image

    from transferkit.data.images import to_rgb

    if len(data) > settings.max_file_bytes:
        raise _fail(413, f"{name}: file is {len(data):,} bytes; the limit is {settings.max_file_bytes:,} bytes.")
    if not data:
        raise _fail(422, f"{name}: the file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > settings.max_image_pixels:
                raise _fail(413, f"{name}: image is {width}x{height} = {width * height:,} pixels; the limit is "
                                 f"{settings.max_image_pixels:,} pixels.")
            image.load()
            return to_rgb(image)
    except HTTPException:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _fail(413, f"{name}: image is larger than the {settings.max_image_pixels:,} pixels allowed.") from None
    except Exception as exc:  # Pillow raises many kinds for broken or non-image files
        raise _fail(422, f"{name}: not a readable image ({type(exc).__name__}: {exc}).") from None


def _top_k(value: Any, settings: ServeConfig, n_classes: int) -> int:
    if value is None:
        return min(settings.top_k, n_classes)
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise _fail(422, f"top_k must be a whole number from 1 to {n_classes}; got {value!r}.") from None
    if not 1 <= k <= n_classes:
        raise _fail(422, f"top_k must be from 1 to {n_classes} (the number of classes); got {k}.")
    return k


def _predictions(proba: np.ndarray, names: list[str], classes: list[str], k: int) -> list[dict[str, Any]]:
    out = []
    for index, (name, row) in enumerate(zip(names, proba)):
        order = np.argsort(-row, kind="stable")
        out.append({"index": index, "input": name, "label": classes[int(order[0])],
                    "probability": float(row[order[0]]),
                    "probabilities": {c: float(p) for c, p in zip(classes, row)},
                    "top_k": [{"label": classes[int(i)], "probability": float(row[i])} for i in order[:k]]})
    return out


def create_app(settings: ServeConfig | None = None, predictor: Any = None) -> FastAPI:
    """The FastAPI application serving ``settings.model`` (default: the settings in the environment, as
    ``transferkit serve`` passes them to uvicorn's workers). The model loads, and runs once, before the first
    request is accepted."""
    settings = settings or from_environment()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from transferkit.serving.batching import MicroBatcher
        from transferkit.serving.predictor import Predictor

        model = predictor or Predictor(settings.model, runtime=settings.runtime, device=settings.device,
                                       threads=settings.threads)
        model.warm_up()
        batcher = MicroBatcher(model.predict_proba, wait_s=settings.batch_wait_ms / 1000.0,
                               max_items=settings.max_batch_items)
        await batcher.start()
        state.update(predictor=model, batcher=batcher, started=time.time(), requests=0)
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="transferkit model service", version=__version__, lifespan=lifespan,
                  description="Class probabilities from a transferkit model folder. Image models take multipart "
                              "uploads (`files`), text models JSON (`texts`).")

    @app.get("/health", summary="liveness and readiness")
    async def health() -> dict[str, Any]:
        model = state["predictor"]
        return {"status": "ok", "model": os.path.basename(os.path.normpath(settings.model)),
                "runtime": model.runtime, "pid": os.getpid(), "uptime_s": round(time.time() - state["started"], 1),
                "requests": state["requests"]}

    @app.get("/info", summary="model card, labels, preprocessing and limits")
    async def info() -> dict[str, Any]:
        batcher = state["batcher"]
        return {**state["predictor"].info(),
                "limits": {"max_batch": settings.max_batch, "max_file_bytes": settings.max_file_bytes,
                           "max_image_pixels": settings.max_image_pixels, "max_text_chars": settings.max_text_chars,
                           "max_request_bytes": settings.max_request_bytes},
                "batching": {"wait_ms": settings.batch_wait_ms, "max_items": settings.max_batch_items,
                             "batches_run": batcher.batches, "inputs_run": batcher.items},
                "transferkit_version_serving": __version__}

    @app.post("/predict", summary="classify images (multipart) or texts (JSON)", response_model=PredictResponse,
              responses=_ERRORS, openapi_extra=_PREDICT_BODY)
    async def predict(request: Request) -> dict[str, Any]:
        model = state["predictor"]
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        expected = "multipart/form-data" if model.modality == "image" else "application/json"
        if content_type != expected:
            how = ("multipart/form-data with one or more file parts named 'files'" if model.modality == "image"
                   else 'application/json like {"texts": ["..."]}')
            raise _fail(415, f"this is a {model.modality} model: send {how}; got content type "
                             f"{content_type or '(none)'}.")
        body = await _read_body(request, settings.max_request_bytes)
        if model.modality == "image":
            items, names, k = await _image_inputs(request, model, settings)
        else:
            items, names, k = _text_inputs(body, model, settings)
        state["requests"] += 1
        proba = await state["batcher"].submit(items)
        return {"model": os.path.basename(os.path.normpath(settings.model)), "runtime": model.runtime,
                "predictions": _predictions(proba, names, model.classes, k)}

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    return app


async def _image_inputs(request: Request, model: Any, settings: ServeConfig):
    from starlette.datastructures import UploadFile

    try:
        form = await request.form(max_files=settings.max_batch + 1, max_fields=16,
                                  max_part_size=settings.max_file_bytes)
    except Exception as exc:  # Starlette answers parser limits with its own HTTPException(400) around them
        message = str(getattr(exc, "detail", None) or exc)
        if "too many files" in message.lower():
            raise _fail(413, f"more than {settings.max_batch} files in one request; the limit is "
                             f"{settings.max_batch}.") from None
        status = 413 if "too many" in message.lower() or "exceeded" in message.lower() else 400
        raise _fail(status, f"multipart body cannot be parsed: {message}") from None
    unknown = sorted({key for key in form.keys() if key != "files"})
    if unknown:
        raise _fail(422, f"unknown form field(s) {', '.join(repr(u) for u in unknown)}; send images as file parts "
                         "named 'files' (top_k is a query parameter: /predict?top_k=3).")
    parts = form.getlist("files")
    if not parts:
        raise _fail(422, "no file parts named 'files' in the form; send one or more images.")
    if len(parts) > settings.max_batch:
        raise _fail(413, f"{len(parts)} files in one request; the limit is {settings.max_batch}.")
    items, names = [], []
    for i, part in enumerate(parts):
        if not isinstance(part, UploadFile):
            raise _fail(422, f"files[{i}] is a text field, not a file upload; send the image's bytes as a file part.")
        name = f"files[{i}] ({part.filename})" if part.filename else f"files[{i}]"
        data = await part.read(settings.max_file_bytes + 1)
        items.append(_decode_image(data, name, settings))
        names.append(part.filename or f"files[{i}]")
    await form.close()
    extra = set(request.query_params) - {"top_k"}
    if extra:
        raise _fail(422, f"unknown query parameter(s) {', '.join(sorted(map(repr, extra)))}; only top_k is taken.")
    return items, names, _top_k(request.query_params.get("top_k"), settings, len(model.classes))


def _text_inputs(body: bytes, model: Any, settings: ServeConfig):
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(400, f"body is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise _fail(422, f'the JSON body must be an object like {{"texts": ["..."]}}; got {type(data).__name__}.')
    if isinstance(data.get("texts"), list) and len(data["texts"]) > settings.max_batch:
        raise _fail(413, f"{len(data['texts'])} texts in one request; the limit is {settings.max_batch}.")
    try:
        parsed = TextRequest.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "(body)"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown field '{where}' (allowed: texts, top_k)")
            elif error["type"] == "missing":
                problems.append(f"field '{where}' is required")
            else:
                problems.append(f"field '{where}': {error['msg']}")
        raise _fail(422, "; ".join(problems) + ".") from None
    if not parsed.texts:
        raise _fail(422, "field 'texts' is empty; send one or more texts.")
    for i, text in enumerate(parsed.texts):
        if len(text) > settings.max_text_chars:
            raise _fail(413, f"texts[{i}] is {len(text):,} characters; the limit is {settings.max_text_chars:,}.")
        if not text.strip():
            raise _fail(422, f"texts[{i}] is empty.")
    names = [f"texts[{i}]" for i in range(len(parsed.texts))]
    return list(parsed.texts), names, _top_k(parsed.top_k, settings, len(model.classes))


def app_from_environment() -> FastAPI:
    """uvicorn's app factory for ``transferkit serve`` (each worker process builds its own app and model)."""
    return create_app()
