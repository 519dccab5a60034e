"""The HTTP service (FastAPI): ``POST /predict``, ``GET /health``, ``GET /info``, and the OpenAPI description.

``POST /predict`` takes

- for image models, ``multipart/form-data`` with one or more file parts named ``files`` (several = a batch);
  ``?top_k=N`` sets how many classes each prediction lists;
- for text models, ``application/json`` ``{"texts": ["...", ...], "top_k": N}``;
- for detectors, image uploads as above with ``?score_threshold=S`` (0 to 1, default 0.3) instead of ``top_k``:
  each prediction is ``{"index", "input", "detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}``, the
  records ``transferkit predict`` gives (:mod:`transferkit.serving.detecting`).

It answers ``{"model", "runtime", "predictions": [{"index", "input", "label", "probability", "probabilities",
"top_k"}]}``. ``POST /explain`` takes the same requests, and the attribution method and the explained class
(``?method=...&target=...`` beside image uploads; ``"method"`` and ``"target"`` in a text request's JSON): see
:mod:`transferkit.serving.explaining`. The service reads only what a client sends: no field names a path, a URL or
anything on the server. Every limit (request size, file size, image pixels, batch size, text length) is checked
before the model runs and answered with a 4xx whose ``detail`` names the input and the limit:

======  ==========================================================================================
code    when
======  ==========================================================================================
400     the body is empty, not UTF-8, not valid (strict) JSON, nested too deeply, or the multipart body cannot be
        parsed; ``/explain`` asked of a detector
404     no such endpoint
405     the endpoint exists but not for this method (``GET /predict``)
413     request body, a file, an image's pixels, a text's length or the batch is over its limit
415     wrong content type (an image model given JSON, a text model given files, anything else)
422     a field is missing, unknown, repeated, of the wrong type, or an image cannot be decoded
500     the model failed on valid inputs (logged with its traceback; never a client's mistake)
======  ==========================================================================================

A client that goes away mid-request is logged in one line. Every answer is strict JSON (no NaN or Infinity).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import sys
import time
import warnings
from http import HTTPStatus
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from transferkit._version import __version__
from transferkit.errors import TransferkitError
from transferkit.modalities import get_modality
from transferkit.serving.body import body_problems
from transferkit.serving.settings import ServeConfig, from_environment
from transferkit.tasks import task_of

log = logging.getLogger("transferkit")

#: Deepest JSON nesting a text request may have (a valid one has 2: an object holding a list). Checked on the raw
#: bytes before parsing, because Python's JSON parser recurses once per level.
MAX_JSON_DEPTH = 32
#: Image formats an upload may have: raster formats decoded by Pillow itself (no external programs, unlike EPS).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
#: Exit status of a worker process that cannot load the model (uvicorn's own code for a failed start).
STARTUP_FAILURE = 3
_ENDPOINTS = ("POST /predict, POST /explain, POST /recommend (recommenders), GET /health, GET /info, GET /openapi.json, "
              "GET /docs")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_SURROGATE = re.compile("[\ud800-\udfff]")
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


class TextRequest(BaseModel):
    """The JSON body of ``POST /predict`` for text models."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(..., description="texts to classify (one prediction each, in order)")
    top_k: int | None = Field(None, ge=1, strict=True,
                              description="classes listed per prediction (default: the service's)")


class TextExplainRequest(BaseModel):
    """The JSON body of ``POST /explain`` for text models."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(..., description="texts to explain (one explanation each, in order)")
    method: str | None = Field(None, strict=True, description="attribution method (default: the model's first)")
    target: str | None = Field(None, strict=True,
                               description="class whose score is explained (default: each text's predicted class)")


class ClassProbability(BaseModel):
    label: str
    probability: float


class Detection(BaseModel):
    label: str = Field(..., description="the detected object's class")
    score: float = Field(..., description="the detector's score, 0 to 1")
    box: list[float] = Field(..., description="[x1, y1, x2, y2] in the uploaded image's pixels")


class Prediction(BaseModel):
    index: int = Field(..., description="position of the input in the request")
    input: str = Field(..., description="the uploaded file's name, or texts[i]")
    label: str | None = Field(None, description="classification: the most likely class")
    probability: float | None = Field(None, description="classification: its probability")
    probabilities: dict[str, float] | None = Field(
        None, description="every class's probability; multi-label: each label's probability (the top k)")
    top_k: list[ClassProbability] | None = Field(
        None, description="classification: the k most likely classes, most likely first")
    value: float | None = Field(None, description="regression: the predicted value, in the target's units")
    low: float | None = Field(None, description="regression with a prediction interval: its lower end (value - the "
                              "split-conformal width calibrated by fit)")
    high: float | None = Field(None, description="regression with a prediction interval: its upper end")
    level: float | None = Field(None, description="regression with a prediction interval: its nominal coverage")
    labels: list[str] | None = Field(None, description="multi-label: the predicted label set, most likely first")
    detections: list[Detection] | None = Field(
        None, description="detection: the boxes scoring at least score_threshold, best first")


class PredictResponse(BaseModel):
    model: str
    runtime: str
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    detail: str


_ERRORS = {code: {"model": ErrorResponse, "description": text} for code, text in (
    (400, "malformed body (empty, not UTF-8, invalid or too deeply nested JSON, or invalid multipart)"),
    (413, "over a limit: request size, file size, image pixels, batch size or text length"),
    (415, "wrong content type for this model"),
    (422, "missing, unknown, repeated or wrongly typed field, or an undecodable image"),
    (500, "the model failed on valid inputs (a fault of the server, logged there)"),
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


_EXPLAIN_BODY = {
    "parameters": [
        {"name": "method", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "image models: attribution method (gradcam, integrated-gradients, smoothgrad)"},
        {"name": "target", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "image models: class whose score is explained (default: the predicted class)"}],
    "requestBody": {
        "required": True,
        "description": "Image models: multipart/form-data with file parts named `files`, the method and the class "
                       "as query parameters. Text models: JSON with `texts`, `method` and `target`.",
        "content": {
            "multipart/form-data": _PREDICT_BODY["requestBody"]["content"]["multipart/form-data"],
            "application/json": {"schema": TextExplainRequest.model_json_schema()},
        },
    },
}


def refuse(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes, whether or not Content-Length is sent."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise refuse(400, f"Content-Length header is not a number ({declared!r}).") from None
        if size > limit:
            raise refuse(413, f"request body is {size:,} bytes; the limit is {limit:,} bytes.")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise refuse(413, f"request body is over the limit of {limit:,} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's own cache of the body: form parsing below reads it from there
    return body


def decode_image_upload(data: bytes, name: str, settings: ServeConfig):
    """Bytes of one uploaded file as an RGB image; 413 / 422 naming the file when it cannot be used. The size is
    read from the header and checked before any pixel is decoded (a long, thin image is fine: the preprocessing
    resizes only the part its crop keeps)."""
    from PIL import Image

    from transferkit.data.images import to_rgb

    if len(data) > settings.max_file_bytes:
        raise refuse(413, f"{name}: file is {len(data):,} bytes; the limit is {settings.max_file_bytes:,} bytes.")
    if not data:
        raise refuse(422, f"{name}: the file is empty; send the image's bytes.")
    limit = settings.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.init()  # registers every plugin once; the formats this Pillow lacks are left out
            image = Image.open(io.BytesIO(data), formats=[f for f in IMAGE_FORMATS if f in Image.OPEN])
            width, height = image.size
            if width * height > limit:
                raise refuse(413, f"{name}: image is {width}x{height} = {width * height:,} pixels; the limit is "
                                 f"{limit:,} pixels. Send a smaller image.")
            image.load()
            return to_rgb(image)
    except HTTPException:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # Pillow's own limit, from the header
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)):,} pixels" if declared else "larger than Pillow decodes safely"
        raise refuse(413, f"{name}: image is {size}; the limit is {limit:,} pixels. Send a smaller image.") from None
    except Image.UnidentifiedImageError:
        raise refuse(422, f"{name}: not a readable image: not in one of the formats the service reads "
                         f"({', '.join(IMAGE_FORMATS)}); send an image file in one of those.") from None
    except Exception as exc:  # Pillow raises many kinds for broken files (OSError, SyntaxError, struct.error, ...)
        raise refuse(422, f"{name}: not a readable image ({type(exc).__name__}: {exc}); send a complete PNG, JPEG "
                         "or other image file.") from None


def _top_k(value: Any, settings: ServeConfig, n_classes: int) -> int:
    if value is None:
        return min(settings.top_k, n_classes)
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise refuse(422, f"top_k must be a whole number from 1 to {n_classes}; got {value!r}.") from None
    if not 1 <= k <= n_classes:
        raise refuse(422, f"top_k must be from 1 to {n_classes} (the number of classes); got {k}.")
    return k


def _score_threshold(value: Any) -> float:
    """A detector's ``?score_threshold=`` (default: ``predict``'s, 0.3): a number from 0 to 1, else 422."""
    from transferkit.models.detector import PREDICT_SCORE

    if value is None:
        return PREDICT_SCORE
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if not 0.0 <= threshold <= 1.0:
        raise refuse(422, f"score_threshold must be a number from 0 to 1 (detections scoring at least this are "
                          f"answered; default {PREDICT_SCORE}); got {value!r}.")
    return threshold


def _detection_answer(model: Any, found: list[dict[str, Any]], names: list[str], threshold: float,
                      settings: ServeConfig) -> Any:
    """The answer of a detector: per image its detections scoring at least ``threshold`` (those ``predict``
    gives); a 500 naming the images when the network gave non-finite boxes or unknown classes."""
    problem = model.problem(found, names)
    if problem:
        log.error("serve: %s", problem)
        return JSONResponse({"detail": f"{problem}; this is a fault of the model, logged by the service."},
                            status_code=500)
    return {"model": os.path.basename(os.path.normpath(settings.model)), "runtime": model.runtime,
            "predictions": model.answers(found, names, threshold)}


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``: answers are strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _predictions(proba: np.ndarray, names: list[str], classes: list[str], k: int,
                 task: Any = None, interval: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One answer per input: the class, its probability, every class's and the top k (classification); or what
    the model's task records for one input (``task.prediction_record``: a value, with ``low`` and ``high`` when
    the model carries a prediction ``interval``; a label set with probabilities)."""
    out = []
    options = {"interval": interval} if interval else {}
    for index, (name, row) in enumerate(zip(names, proba)):
        record = task.prediction_record(name, row, classes, k, **options) if task is not None else {}
        if "label" not in record and record:
            out.append({"index": index, **record})
            continue
        order = np.argsort(-row, kind="stable")
        out.append({"index": index, "input": name, "label": classes[int(order[0])],
                    "probability": float(row[order[0]]),
                    "probabilities": {c: float(p) for c, p in zip(classes, row)},
                    "top_k": [{"label": classes[int(i)], "probability": float(row[i])} for i in order[:k]]})
    return out


def load_predictor(settings: ServeConfig):
    """The model of ``settings`` loaded and checked by one prediction (:meth:`Predictor.warm_up`); raises a
    :class:`~transferkit.errors.TransferkitError` naming the folder when it cannot be served. A detector's folder
    gets a :class:`~transferkit.serving.detecting.DetectionPredictor` (boxes), any other a ``Predictor``."""
    from transferkit.serving.detecting import DetectionPredictor, folder_predicts_records
    from transferkit.serving.predictor import Predictor
    from transferkit.serving.recommending import RecommendPredictor, folder_recommends

    if folder_recommends(settings.model):  # POST /recommend (serving/recommending.py)
        model = RecommendPredictor(settings.model, device=settings.device)
        model.warm_up()
        return model
    kind = DetectionPredictor if folder_predicts_records(settings.model) else Predictor
    model = kind(settings.model, runtime=settings.runtime, device=settings.device, threads=settings.threads)
    model.warm_up()
    return model


def _request_kind(request: Request, model: Any) -> tuple[bool, str]:
    """Whether the request carries files (else JSON texts), and its content type's parameters; a content type that
    is not the model's is a 415 saying what to send."""
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    content_type = media_type.strip().lower()
    files = get_modality(model.modality).service_request == "files"
    expected = "multipart/form-data" if files else "application/json"
    if content_type != expected:
        how = ("multipart/form-data with one or more file parts named 'files'" if files
               else 'application/json like {"texts": ["..."]}')
        raise refuse(415, f"this is a {model.modality} model: send {how}; got content type "
                          f"{content_type or '(none)'}.")
    return files, parameters


def create_app(settings: ServeConfig | None = None, predictor: Any = None) -> FastAPI:
    """The FastAPI application serving ``settings.model`` (default: the settings in the environment, as
    ``transferkit serve`` passes them to uvicorn's workers). ``predictor`` is a model already loaded (by
    :func:`load_predictor`); without one, the model loads, and runs once, before the first request is accepted."""
    settings = settings or from_environment()
    state: dict[str, Any] = {}
    app = FastAPI(title="transferkit model service", version=__version__,
                  lifespan=_lifespan(settings, predictor, state),
                  description="Class probabilities from a transferkit model folder. Image models take multipart "
                              "uploads (`files`), text models JSON (`texts`).")
    _add_status_routes(app, settings, state)
    _add_predict_route(app, settings, state)
    _add_explain_route(app, settings, state)
    _add_recommend_route(app, settings, state)
    _add_error_handlers(app)
    return app


def _lifespan(settings: ServeConfig, predictor: Any, state: dict[str, Any]) -> Any:
    """The application's start and stop: the model loaded (unless given) and run once, the micro-batcher started
    (and stopped at the end), the shared ``state`` filled."""
    import anyio

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from transferkit.serving.batching import MicroBatcher

        model = predictor if predictor is not None else load_predictor(settings)
        if not getattr(model, "checked", False):
            model.warm_up()
        run = model.predict_batch if getattr(model, "predicts_records", False) else model.predict_proba
        batcher = MicroBatcher(run, wait_s=settings.batch_wait_ms / 1000.0,
                               max_items=settings.max_batch_items)
        await batcher.start()
        # Images decode in threads (the event loop keeps answering), a few at a time (each may be large).
        state.update(predictor=model, batcher=batcher, started=time.time(), requests=0,
                     decoders=anyio.CapacityLimiter(4))
        try:
            yield
        finally:
            await batcher.stop()

    return lifespan


def _add_status_routes(app: FastAPI, settings: ServeConfig, state: dict[str, Any]) -> None:
    """``GET /health`` and ``GET /info``."""

    @app.get("/health", summary="liveness and readiness")
    async def health() -> dict[str, Any]:
        model = state["predictor"]
        return {"status": "ok", "model": os.path.basename(os.path.normpath(settings.model)),
                "task": getattr(model, "task", None) or task_of(getattr(model, "model", model)).name,
                "runtime": model.runtime, "pid": os.getpid(), "uptime_s": round(time.time() - state["started"], 1),
                "requests": state["requests"]}

    @app.get("/info", summary="model card, labels, preprocessing and limits")
    async def info() -> dict[str, Any]:
        batcher = state["batcher"]
        model = state["predictor"]
        return _finite({**model.info(),
                        "limits": {"max_batch": settings.max_batch, "max_file_bytes": settings.max_file_bytes,
                                   "max_image_pixels": settings.max_image_pixels,
                                   "max_text_chars": settings.max_text_chars,
                                   "max_request_bytes": settings.request_limit(model.modality)},
                        "batching": {"wait_ms": settings.batch_wait_ms, "max_items": settings.max_batch_items,
                                     "batches_run": batcher.batches, "inputs_run": batcher.items},
                        "transferkit_version_serving": __version__})


def _add_predict_route(app: FastAPI, settings: ServeConfig, state: dict[str, Any]) -> None:
    """``POST /predict``: images as multipart uploads or texts as JSON, as the model's modality takes them."""

    @app.post("/predict", summary="classify images (multipart) or texts (JSON); a detector's boxes for images",
              response_model=PredictResponse,
              response_model_exclude_none=True,
              responses=_ERRORS, openapi_extra=_PREDICT_BODY)
    async def predict(request: Request) -> Any:
        model = state["predictor"]
        _refuse_recommender(model)
        files, parameters = _request_kind(request, model)
        body = await _read_body(request, settings.request_limit(model.modality))
        records = getattr(model, "predicts_records", False)  # a detector: boxes, classes and scores per image
        if files:
            items, names, k = await _image_inputs(request, model, settings, state["decoders"],
                                                  accepted=("score_threshold",) if records else ("top_k",))
            threshold = _score_threshold(request.query_params.get("score_threshold")) if records else None
        else:
            items, names, parsed = _text_inputs(body, parameters, request, model, settings)
            k = _top_k(parsed.top_k, settings, len(model.classes))
        if await request.is_disconnected():
            log.info("serve: the client of %s went away before its answer; not predicted", request.url.path)
            return Response(status_code=400)
        state["requests"] += 1
        try:
            proba = await state["batcher"].submit(items)
        except Exception as exc:
            log.error("serve: prediction failed on valid inputs (%s)", type(exc).__name__, exc_info=exc)
            return JSONResponse({"detail": f"the model failed on these inputs ({type(exc).__name__}: {exc}); this "
                                           "is a fault of the service, logged there."}, status_code=500)
        if records:
            return _detection_answer(model, proba, names, threshold, settings)
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(proba).all(axis=1))]
        if bad:
            log.error("serve: the model gave non-finite probabilities for %s", ", ".join(bad))
            return JSONResponse({"detail": f"the model gave non-finite probabilities for {', '.join(bad)}; this is a "
                                           "fault of the model, logged by the service."}, status_code=500)
        return {"model": os.path.basename(os.path.normpath(settings.model)), "runtime": model.runtime,
                "predictions": _predictions(proba, names, model.classes, k, task_of(getattr(model, "model", model)),
                                            getattr(getattr(model, "model", model), "interval", None))}


def _add_explain_route(app: FastAPI, settings: ServeConfig, state: dict[str, Any]) -> None:
    """``POST /explain``: the requests of ``/predict``, read and limited by the same code; one explanation runs at a
    time, in a worker thread (each is tens of forward and backward passes)."""
    import anyio

    limiter = anyio.CapacityLimiter(1)

    @app.post("/explain", summary="explain the predicted (or a named) class of images (multipart; ?method=&target=) "
                                  "or texts (JSON: texts, method, target)",
              responses=_ERRORS, openapi_extra=_EXPLAIN_BODY)
    async def explain(request: Request) -> Any:
        from transferkit.serving.explaining import check_request, explain_items

        model = state["predictor"]
        _refuse_recommender(model)
        if getattr(model, "predicts_records", False):
            raise refuse(400, "this model is an object detector; /explain explains a classifier's class scores. "
                              "POST the images to /predict for their boxes, classes and scores.")
        files, parameters = _request_kind(request, model)
        body = await _read_body(request, settings.request_limit(model.modality))
        if files:
            items, names, _ = await _image_inputs(request, model, settings, state["decoders"],
                                                  accepted=("method", "target"))
            asked, where = request.query_params, "query parameter"
        else:
            items, names, parsed = _text_inputs(body, parameters, request, model, settings, TextExplainRequest)
            asked, where = {"method": parsed.method, "target": parsed.target}, "field"
        try:
            method, target = check_request(model, asked.get("method"), asked.get("target"), where=where)
        except TransferkitError as exc:
            raise refuse(422, str(exc)) from None
        state["requests"] += 1
        answers = await anyio.to_thread.run_sync(explain_items, model, items, names, method, target,
                                                 limiter=limiter)
        return {"model": os.path.basename(os.path.normpath(settings.model)), "method": method,
                "explanations": _finite(answers)}


def _refuse_recommender(model: Any) -> None:
    if getattr(model, "recommends", False):
        raise refuse(400, 'this model is a recommender: POST /recommend with JSON like {"user": "42", "k": 10}.')


def _add_recommend_route(app: FastAPI, settings: ServeConfig, state: dict[str, Any]) -> None:
    """``POST /recommend``: a recommender's JSON requests, answered in a worker thread
    (:mod:`transferkit.serving.recommending`)."""
    import anyio

    @app.post("/recommend", summary="a recommender's best items for a user, or the items nearest an item or a new "
                                    "item's text (JSON: user | item | content, k, scorer)", responses=_ERRORS)
    async def recommend(request: Request) -> Any:
        model = state["predictor"]
        if not getattr(model, "recommends", False):
            raise refuse(400, "this model is not a recommender (those come from `transferkit recommend fit`); POST "
                              "/predict for its predictions.")
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/json":
            raise refuse(415, 'send application/json like {"user": "42", "k": 10}; got content type '
                              f"{content_type or '(none)'}.")
        body = await _read_body(request, settings.request_limit(model.modality))
        state["requests"] += 1
        items = await anyio.to_thread.run_sync(model.recommend, body)
        return {"model": os.path.basename(os.path.normpath(settings.model)), "items": _finite(items)}


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answered in JSON: unknown endpoints and methods named, a client that went away, the service's
    own faults."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
            detail = f"no endpoint {request.url.path}; the endpoints are {_ENDPOINTS}."
        elif exc.status_code == 405 and detail == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
            allowed = (exc.headers or {}).get("Allow", "")
            detail = (f"{request.method} is not allowed on {request.url.path}; use {allowed or 'another method'} "
                      f"(the endpoints are {_ENDPOINTS}).")
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, exc: ClientDisconnect) -> Response:
        log.info("serve: a client of %s %s went away before sending its whole request", request.method,
                 request.url.path)
        return Response(status_code=400)  # nobody reads it

    @app.exception_handler(Exception)
    async def server_fault(request: Request, exc: Exception) -> JSONResponse:
        # The server's own fault: uvicorn logs the traceback; the client gets JSON like every other answer.
        return JSONResponse({"detail": f"internal error of the service ({type(exc).__name__}); it is logged there."},
                            status_code=500)


async def _image_inputs(request: Request, model: Any, settings: ServeConfig, decoders: Any,
                        accepted: tuple[str, ...] = ("top_k",)):
    """``(items, names, k)`` of a multipart request; ``accepted``: the query parameters the endpoint takes (each at
    most once; ``k`` is None when top_k is not one of them)."""
    import anyio
    from starlette.datastructures import UploadFile

    extra = set(request.query_params) - set(accepted)
    if extra:
        raise refuse(422, f"unknown query parameter(s) {', '.join(sorted(map(repr, extra)))}; only "
                         f"{' and '.join(accepted)} {'is' if len(accepted) == 1 else 'are'} taken.")
    for name in accepted:
        if len(request.query_params.getlist(name)) > 1:
            raise refuse(422, f"query parameter {name} is given more than once; give it once "
                              f"({request.url.path}?{name}=...).")
    k = _top_k(request.query_params.get("top_k"), settings, len(model.classes)) if "top_k" in accepted else None

    try:
        form = await request.form(max_files=settings.max_batch + 1, max_fields=16,
                                  max_part_size=settings.max_file_bytes)
    except Exception as exc:  # Starlette answers parser limits with its own HTTPException(400) around them
        message = str(getattr(exc, "detail", None) or exc)
        if "too many files" in message.lower():
            raise refuse(413, f"more than {settings.max_batch} files in one request; the limit is "
                             f"{settings.max_batch}.") from None
        status = 413 if "too many" in message.lower() or "exceeded" in message.lower() else 400
        raise refuse(status, f"multipart body cannot be parsed: {message}") from None
    unknown = sorted({key for key in form.keys() if key != "files"})
    if unknown:
        raise refuse(422, f"unknown form field(s) {', '.join(repr(u) for u in unknown)}; send images as file parts "
                         "named 'files' (top_k is a query parameter: /predict?top_k=3).")
    parts = form.getlist("files")
    if not parts:
        raise refuse(422, "no file parts named 'files' in the form; send one or more images.")
    if len(parts) > settings.max_batch:
        raise refuse(413, f"{len(parts)} files in one request; the limit is {settings.max_batch}.")
    entry = get_modality(model.modality)
    items, names = [], []
    for i, part in enumerate(parts):
        if not isinstance(part, UploadFile):
            raise refuse(422, f"files[{i}] is a text field, not a file upload; send the image's bytes as a file part.")
        name = f"files[{i}] ({part.filename})" if part.filename else f"files[{i}]"
        data = await part.read(settings.max_file_bytes + 1)
        items.append(await anyio.to_thread.run_sync(entry.decode_upload, data, name, settings, limiter=decoders))
        names.append(part.filename or f"files[{i}]")
    await form.close()
    return items, names, k


class _RepeatedField(ValueError):
    pass


def _no_repeated_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _RepeatedField(key)
        seen.add(key)
    return dict(pairs)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (strict JSON has no NaN or Infinity)")


def _json_depth(body: bytes) -> int | None:
    """How deeply the arrays and objects of a JSON text nest, counted without parsing it (strings removed, then a
    running sum of the brackets); ``None`` when a string is not closed (the text is not JSON)."""
    structure = _JSON_STRING.sub(b"", body)
    if b'"' in structure:
        return None
    steps = _BRACKET_STEP[np.frombuffer(structure, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def _text_inputs(body: bytes, parameters: str, request: Request, model: Any, settings: ServeConfig,
                 schema: type[BaseModel] = TextRequest):
    """``(texts, names, parsed)`` of a JSON request; ``schema``: the endpoint's body (``TextRequest`` for /predict,
    ``TextExplainRequest`` for /explain)."""
    example = ('send a JSON object like {"texts": ["first text", "second text"], "top_k": 3}' if schema is TextRequest
               else 'send a JSON object like {"texts": ["first text"], "method": "occlusion", "target": "a class"}')
    charset = next((p.split("=", 1)[1].strip().strip('"').lower() for p in parameters.split(";")
                    if p.strip().lower().startswith("charset=")), "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise refuse(415, f"the body's charset is {charset}; JSON is UTF-8: encode the body as UTF-8 (charset=utf-8).")
    if request.query_params:
        raise refuse(422, f"unknown query parameter(s) {', '.join(sorted(map(repr, set(request.query_params))))}; "
                         f"a text model takes everything in the JSON body ({example}).")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(400, f"body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}); encode the JSON "
                         "as UTF-8.") from None
    if not text.strip():
        raise refuse(400, f"the body is empty; {example}.")
    depth = _json_depth(body)
    if depth is not None and depth > MAX_JSON_DEPTH:
        raise refuse(400, f"the JSON nests {depth} levels deep; the limit is {MAX_JSON_DEPTH} (a request needs 2): "
                         f"{example}.")
    try:
        data = json.loads(text, parse_constant=_not_json, object_pairs_hook=_no_repeated_fields)
    except _RepeatedField as exc:
        raise refuse(422, f"field {str(exc)!r} appears more than once in an object; give each field once.") from None
    except RecursionError:
        raise refuse(400, f"the JSON nests too deeply; {example}.") from None
    except ValueError as exc:
        raise refuse(400, f"body is not valid JSON ({exc}); {example}.") from None
    if not isinstance(data, dict):
        raise refuse(422, f'the JSON body must be an object like {{"texts": ["..."]}}; got {type(data).__name__}.')
    if isinstance(data.get("texts"), list) and len(data["texts"]) > settings.max_batch:
        raise refuse(413, f"{len(data['texts'])} texts in one request; the limit is {settings.max_batch}.")
    try:
        parsed = schema.model_validate(data)
    except ValidationError as exc:
        raise refuse(422, body_problems(exc, schema) + f"; {example}.") from None
    if not parsed.texts:
        raise refuse(422, "field 'texts' is empty; send one or more texts.")
    for i, text in enumerate(parsed.texts):
        if len(text) > settings.max_text_chars:
            raise refuse(413, f"texts[{i}] is {len(text):,} characters; the limit is {settings.max_text_chars:,}.")
        if not text.strip():
            raise refuse(422, f"texts[{i}] is empty.")
        lone = _SURROGATE.search(text)
        if lone:
            raise refuse(422, f"texts[{i}] holds an unpaired surrogate (\\u{ord(lone.group()):04x}) at character "
                             f"{lone.start()}, which is not Unicode text; send valid UTF-8 (a character outside the "
                             "basic plane is written as a surrogate pair, high then low).")
    names = [f"texts[{i}]" for i in range(len(parsed.texts))]
    return list(parsed.texts), names, parsed


def app_from_environment() -> FastAPI:
    """uvicorn's app factory for ``transferkit serve`` with several workers: each worker process loads its own
    model (``serve`` checked it before starting them). A model that cannot load here (the folder changed since)
    ends the worker with one line on stderr and uvicorn's start-up failure status, which stops the service."""
    try:
        settings = from_environment()
        with warnings.catch_warnings():  # `serve` showed the folder's warnings once; not again per worker
            warnings.simplefilter("ignore")
            predictor = load_predictor(settings)
    except TransferkitError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILURE)
    return create_app(settings, predictor)
