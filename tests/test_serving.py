"""`transferkit serve`: the real server in a subprocess on 127.0.0.1, real HTTP requests, answers and codes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(size: tuple[int, int] = (32, 32), seed: int = 0, noise: bool = True) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    array = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) if noise else \
        np.full((size[1], size[0], 3), 90, dtype=np.uint8)
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


class Server:
    """``transferkit serve`` in a subprocess; stopped (and its output kept for failures) at the end."""

    def __init__(self, model: Path, *options: str, cache: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERKIT_CACHE": str(cache)}
        self.log = open(cache.parent / f"server-{self.port}.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transferkit.cli.main", "serve", str(model), "--host", "127.0.0.1", "--port",
             str(self.port), *options], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server did not answer /health within 120 s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny image model (random CNN + probe) and a tiny text model (2-layer BERT + probe), saved as folders."""
    from transferkit import fit

    root = tmp_path_factory.mktemp("serve-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        images = write_image_folder(root / "images", per_class=6)
        fit(str(images), backbone=TINY_IMAGE_BACKBONE, output=str(root / "image-model"), progress=False,
            device="cpu", report=False, tracking_uri="off")
        from transformers import AutoTokenizer, BertConfig, BertModel

        from transferkit.backbones.packaged import minilm_folder

        bert = root / "tiny-bert"
        tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
        import torch

        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=128)).save_pretrained(bert)
        tokenizer.save_pretrained(bert)
        fit(str(write_text_csv(root / "reviews.csv")), backbone=str(bert), output=str(root / "text-model"),
            progress=False, device="cpu", report=False, tracking_uri="off", max_length=64)
    return {"image": root / "image-model", "text": root / "text-model", "images": images, "cache": root / "cache"}


@pytest.fixture(scope="module")
def image_server(models):
    server = Server(models["image"], "--workers", "2", "--max-batch", "4", "--max-file-mb", "0.05",
                    "--max-image-pixels", "250000", "--top-k", "2", cache=models["cache"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def text_server(models):
    server = Server(models["text"], "--max-batch", "3", "--max-text-chars", "200", "--batch-wait-ms", "100",
                    cache=models["cache"])
    yield server
    server.stop()


def _files(*blobs: bytes, name: str = "files") -> list:
    return [(name, (f"img{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


def test_image_predictions_match_the_python_api(image_server, models) -> None:
    from transferkit import predict

    paths = sorted((models["images"] / "fox").glob("*.png"))[:2] + sorted((models["images"] / "cat").glob("*.png"))[:1]
    answer = httpx.post(f"{image_server.url}/predict", files=[("files", (p.name, p.read_bytes(), "image/png"))
                                                             for p in paths], timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["runtime"] == "torch" and len(body["predictions"]) == 3
    direct = {r["input"]: r for r in predict(models["image"], str(models["images"]), progress=False)}
    for prediction, path in zip(body["predictions"], paths):
        assert prediction["input"] == path.name
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert len(prediction["top_k"]) == 2  # the service's --top-k
        assert prediction["top_k"][0]["label"] == prediction["label"]
        reference = direct[str(path)]
        assert prediction["label"] == reference["label"]
        for label, p in reference["probabilities"].items():
            assert prediction["probabilities"][label] == pytest.approx(p, abs=1e-4)
    one = httpx.post(f"{image_server.url}/predict?top_k=1", files=_files(paths[0].read_bytes()), timeout=60).json()
    assert len(one["predictions"][0]["top_k"]) == 1


def test_health_info_and_openapi(image_server, models) -> None:
    health = httpx.get(f"{image_server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == "image-model"
    info = httpx.get(f"{image_server.url}/info").json()
    assert info["classes"] == ["cat", "dog", "fox"] and info["modality"] == "image"
    assert info["preprocessing"]["kind"] == "image" and info["preprocessing"]["input_size"]
    assert info["limits"]["max_batch"] == 4 and info["limits"]["max_image_pixels"] == 250000
    assert info["model_card"].startswith("# transferkit model")
    spec = httpx.get(f"{image_server.url}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert {"413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert "/health" in spec["paths"] and "/info" in spec["paths"]


def test_a_long_thin_image_is_classified(image_server) -> None:
    """2 x 100,000 pixels is under the pixel limit, and would be 160 x 8,000,000 if resized whole to the 160-px
    input: the preprocessing resizes only what its crop keeps, so it is answered, in little memory."""
    answer = httpx.post(f"{image_server.url}/predict", files=_files(_png((2, 100_000), noise=False)), timeout=60)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"][0]["probabilities"]) == 3


def test_several_workers_answer(image_server) -> None:
    async def pids() -> set[int]:
        seen: set[int] = set()
        for _ in range(10):
            async with httpx.AsyncClient() as client:  # new connections, so both workers get some
                answers = await asyncio.gather(*[client.get(f"{image_server.url}/health") for _ in range(8)])
            seen |= {a.json()["pid"] for a in answers}
            if len(seen) >= 2:
                break
        return seen

    assert len(asyncio.run(pids())) == 2


def _png_header(width: int, height: int) -> bytes:
    """The start of a PNG that declares ``width`` x ``height`` pixels (a decompression bomb's header: a few bytes
    that promise gigabytes once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 1000))


def _eps() -> bytes:
    """An Encapsulated PostScript image: Pillow can open it, but decoding it runs Ghostscript."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "EPS")
    return buffer.getvalue()


@pytest.mark.parametrize("case", ["corrupt", "empty", "oversized_file", "too_many_pixels", "too_many_files",
                                  "far_too_many_files",
                                  "json_body", "no_content_type", "unknown_field", "unknown_query", "bad_top_k",
                                  "no_files", "text_field_as_file", "declared_too_large",
                                  "bomb_header", "postscript", "truncated", "top_k_zero",
                                  "top_k_negative", "top_k_huge", "top_k_not_a_number", "top_k_twice"])
def test_image_requests_that_are_refused(image_server, case) -> None:
    url = f"{image_server.url}/predict"
    good = _png()
    if case == "corrupt":
        answer = httpx.post(url, files=_files(good, b"not an image at all"))
        code, words = 422, ["files[1] (img1.png)", "not a readable image", "PNG, JPEG"]
    elif case == "bomb_header":  # 10 gigapixels declared in a few hundred bytes: refused from the header
        answer = httpx.post(url, files=_files(_png_header(100_000, 100_000)))
        code, words = 413, ["files[0]", "10,000,000,000 pixels", "limit is 250,000 pixels", "smaller image"]
    elif case == "postscript":
        answer = httpx.post(url, files=_files(_eps()))
        code, words = 422, ["files[0]", "not in one of the formats", "PNG, JPEG"]
    elif case == "truncated":
        answer = httpx.post(url, files=_files(good[: len(good) // 2]))
        code, words = 422, ["files[0]", "not a readable image"]
    elif case.startswith("top_k_"):
        query = {"top_k_zero": "top_k=0", "top_k_negative": "top_k=-1", "top_k_huge": f"top_k={10**9}",
                 "top_k_not_a_number": "top_k=three", "top_k_twice": "top_k=1&top_k=2"}[case]
        answer = httpx.post(f"{url}?{query}", files=_files(good))
        code, words = 422, ["top_k", "more than once" if case == "top_k_twice" else "from 1 to 3"]
    elif case == "empty":
        answer = httpx.post(url, files=_files(b""))
        code, words = 422, ["files[0]", "empty"]
    elif case == "oversized_file":
        answer = httpx.post(url, files=_files(os.urandom(60 * 1024)))
        code, words = 413, ["files[0]", "limit is 52,428 bytes"]
    elif case == "too_many_pixels":
        answer = httpx.post(url, files=_files(_png((600, 600), noise=False)))  # a few kB
        code, words = 413, ["600x600", "250,000 pixels"]
    elif case == "too_many_files":
        answer = httpx.post(url, files=_files(*[good] * 5))
        code, words = 413, ["5 files in one request", "limit is 4"]
    elif case == "far_too_many_files":  # refused by the form parser, before the files are kept
        answer = httpx.post(url, files=_files(*[good] * 9))
        code, words = 413, ["more than 4 files", "limit is 4"]
    elif case == "json_body":
        answer = httpx.post(url, json={"texts": ["hello"]})
        code, words = 415, ["image model", "multipart/form-data", "application/json"]
    elif case == "no_content_type":
        answer = httpx.post(url, content=good)
        code, words = 415, ["(none)"]
    elif case == "unknown_field":
        answer = httpx.post(url, files=_files(good), data={"path": "/etc/passwd"})
        code, words = 422, ["unknown form field", "'path'"]
    elif case == "unknown_query":
        answer = httpx.post(f"{url}?file=/etc/passwd", files=_files(good))
        code, words = 422, ["unknown query parameter", "'file'"]
    elif case == "bad_top_k":
        answer = httpx.post(f"{url}?top_k=9", files=_files(good))
        code, words = 422, ["top_k must be from 1 to 3"]
    elif case == "no_files":
        answer = httpx.post(url, files=_files(good, name="images"))
        code, words = 422, ["'images'"]
    elif case == "text_field_as_file":
        answer = httpx.post(url, data={"files": "cat.png"}, files=_files(good, name="files"))
        code, words = 422, ["text field, not a file"]
    else:  # a body announced larger than any allowed request is refused before it is read (raw socket: no client
        # library sends a Content-Length it does not keep)
        with socket.create_connection(("127.0.0.1", image_server.port), timeout=30) as raw:
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                        b"Content-Length: 1000000000\r\n\r\n--b\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        answer = httpx.Response(int(head.split()[1]), content=payload)
        code, words = 413, ["1,000,000,000 bytes"]
    assert answer.status_code == code, answer.text
    detail = answer.json()["detail"]
    assert all(w in detail for w in words), detail
    assert httpx.get(f"{image_server.url}/health").status_code == 200  # still serving


def test_text_predictions_and_refusals(text_server, models) -> None:
    from transferkit import predict

    url = f"{text_server.url}/predict"
    texts = ["a wonderful, moving film", "a dull, lifeless mess"]
    answer = httpx.post(url, json={"texts": texts, "top_k": 1}, timeout=60)
    assert answer.status_code == 200, answer.text
    reference = predict(models["text"], texts, progress=False)
    for prediction, expected in zip(answer.json()["predictions"], reference):
        assert prediction["label"] == expected["label"] and len(prediction["top_k"]) == 1
        for label, p in expected["probabilities"].items():
            assert prediction["probabilities"][label] == pytest.approx(p, abs=1e-4)
    refusals = [
        (dict(json={"texts": texts, "path": "/etc/passwd"}), 422, ["unknown field 'path'"]),
        (dict(json={"text": "one"}), 422, ["field 'texts' is required", "unknown field 'text'"]),
        (dict(json={"texts": "one text"}), 422, ["texts"]),
        (dict(json={"texts": ["ok", 3]}), 422, ["texts.1"]),
        (dict(json=["a", "b"]), 422, ["must be an object"]),
        (dict(json={"texts": []}), 422, ["empty"]),
        (dict(json={"texts": ["  "]}), 422, ["texts[0] is empty"]),
        (dict(json={"texts": ["x" * 201]}), 413, ["texts[0] is 201 characters", "limit is 200"]),
        (dict(json={"texts": ["a"] * 4}), 413, ["4 texts", "limit is 3"]),
        (dict(json={"texts": ["a"], "top_k": 0}), 422, ["top_k"]),
        (dict(content=b'{"texts": ["a",', headers={"content-type": "application/json"}), 400, ["not valid JSON"]),
        (dict(files=_files(_png())), 415, ["text model", "application/json"]),
        (dict(content=b"texts=a", headers={"content-type": "application/x-www-form-urlencoded"}), 415, ["text model"]),
    ]
    for request, code, words in refusals:
        answer = httpx.post(url, **request)
        assert answer.status_code == code, (request, answer.text)
        assert all(w in answer.json()["detail"] for w in words), (request, answer.json())


def test_explain_takes_a_method_and_a_class_checked_like_the_command(image_server, text_server) -> None:
    import base64

    url = f"{image_server.url}/explain"
    answer = httpx.post(f"{url}?method=gradcam&target=dog", files=_files(_png()), timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["method"] == "gradcam"
    (explained,) = answer.json()["explanations"]
    assert explained["target"] == "dog" and 0 <= explained["target_probability"] <= 1
    assert base64.b64decode(explained["heatmap_png"])[:4] == b"\x89PNG"
    refusals = [
        ("?method=occlusion", ["query parameter 'method'", "unknown method 'occlusion' for image models",
                               "integrated-gradients, gradcam, smoothgrad"]),
        ("?target=wolf", ["query parameter 'target'", "'wolf' is not a class", "cat, dog, fox"]),
        ("?method=gradcam&method=smoothgrad", ["method is given more than once"]),
        ("?top_k=2", ["unknown query parameter(s) 'top_k'", "method and target"]),
    ]
    for query, words in refusals:
        refused = httpx.post(url + query, files=_files(_png()), timeout=60)
        assert refused.status_code == 422, (query, refused.text)
        assert all(w in refused.json()["detail"] for w in words), (query, refused.json())

    url = f"{text_server.url}/explain"
    answer = httpx.post(url, json={"texts": ["a dull, lifeless mess"], "method": "occlusion", "target": "positive"},
                        timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["method"] == "occlusion"
    (explained,) = answer.json()["explanations"]
    assert explained["target"] == "positive" and [w for w, _ in explained["tokens"]][:2] == ["a", "dull"]
    refusals = [
        ({"method": "gradcam"}, ["field 'method'", "unknown method 'gradcam' for text models",
                                 "integrated-gradients, occlusion"]),
        ({"target": "neutral"}, ["field 'target'", "'neutral' is not a class", "negative, positive"]),
        ({"method": 3}, ["field 'method'"]),
        ({"top_k": 2}, ["unknown field 'top_k'", "allowed: texts, method, target"]),
    ]
    for fields, words in refusals:
        refused = httpx.post(url, json={"texts": ["a text"], **fields}, timeout=60)
        assert refused.status_code == 422, (fields, refused.text)
        assert all(w in refused.json()["detail"] for w in words), (fields, refused.json())


def test_concurrent_text_requests_share_batches(text_server) -> None:
    async def burst() -> list:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*[client.post(f"{text_server.url}/predict", json={"texts": [f"film {i}"]})
                                          for i in range(12)])

    before = httpx.get(f"{text_server.url}/info").json()["batching"]
    answers = asyncio.run(burst())
    assert all(a.status_code == 200 for a in answers)
    after = httpx.get(f"{text_server.url}/info").json()["batching"]
    inputs, batches = after["inputs_run"] - before["inputs_run"], after["batches_run"] - before["batches_run"]
    assert inputs == 12 and batches < 12  # 100 ms of waiting let concurrent requests run together


def test_micro_batcher_returns_each_caller_its_rows() -> None:
    from transferkit.serving.batching import MicroBatcher

    calls: list[int] = []

    def predict(items):
        calls.append(len(items))
        return np.array([[float(x), 1.0 - float(x)] for x in items])

    async def main(wait_s: float):
        batcher = MicroBatcher(predict, wait_s=wait_s, max_items=5)
        await batcher.start()
        jobs = [[0.1 * i, 0.1 * i + 0.05] if i % 2 else [0.1 * i] for i in range(6)]
        results = await asyncio.gather(*[batcher.submit(j) for j in jobs])
        await batcher.stop()
        return jobs, results

    jobs, results = asyncio.run(main(0.05))
    for job, rows in zip(jobs, results):
        assert rows[:, 0].tolist() == pytest.approx(job)
    assert sum(calls) == 9 and max(calls) <= 5 and len(calls) < 6
    calls.clear()
    jobs, results = asyncio.run(main(0.0))
    assert calls == [len(j) for j in jobs]  # no waiting: each request alone, in order


def test_onnx_runtime_matches_torch(models) -> None:
    from PIL import Image

    from transferkit.serving.predictor import Predictor

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(models["cache"]))
        images = [Image.open(p).convert("RGB") for p in sorted(models["images"].glob("*/*.png"))[:5]]
        torch_rows = Predictor(models["image"], runtime="torch").predict_proba(images)
        onnx = Predictor(models["image"], runtime="onnx")
        assert onnx.onnx_file.is_file() and onnx.onnx_file.parent.name == "serving"
        np.testing.assert_allclose(onnx.predict_proba(images), torch_rows, atol=1e-4)


def test_serve_refuses_bad_options_before_starting(models, tmp_path: Path) -> None:
    from test_cli import run

    proc = run("serve", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and "no such model folder" in proc.stderr
    proc = run("serve", str(models["image"]), "--workers", "0", check=False)
    assert proc.returncode == 2 and "workers" in proc.stderr
    proc = run("serve", str(models["image"]), "--runtime", "tensorrt", check=False)
    assert proc.returncode == 2 and "runtime" in proc.stderr


def _fuzz_settings():
    from hypothesis import HealthCheck, settings

    return settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def test_fuzzed_json_bodies_never_get_a_server_error(text_server) -> None:
    from hypothesis import example, given
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(),
                        st.text(max_size=300))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
    bodies = st.one_of(values, st.fixed_dictionaries({"texts": st.lists(st.text(max_size=250), max_size=5)},
                                                     optional={"top_k": values}),
                       st.dictionaries(st.sampled_from(["texts", "top_k", "path", "file"]), values, max_size=3))
    url = f"{text_server.url}/predict"

    @_fuzz_settings()
    @given(body=bodies)
    @example(body=float("inf"))
    @example(body={"texts": ["fine"], "top_k": float("nan")})
    @example(body={"texts": ["fine"], "top_k": float("-inf")})
    def check(body) -> None:
        # Python's encoder writes NaN and Infinity as bare tokens (not strict JSON); the server must still answer.
        answer = httpx.post(url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=60)
        assert answer.status_code < 500, (body, answer.status_code, answer.text)
        if answer.status_code == 200:
            for prediction in answer.json()["predictions"]:
                assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-4
        else:
            assert answer.status_code in (400, 413, 415, 422) and answer.json()["detail"], answer.text

    check()


def test_fuzzed_uploads_and_content_types_never_get_a_server_error(image_server) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    url = f"{image_server.url}/predict"
    blobs = st.one_of(st.binary(max_size=2000), st.just(_png()), st.binary(max_size=64).map(lambda b: _png()[:40] + b))
    content_types = st.sampled_from(["image/png", "application/octet-stream", "text/plain", ""])

    @_fuzz_settings()
    @given(files=st.lists(st.tuples(blobs, content_types), min_size=0, max_size=3),
           field=st.sampled_from(["files", "file", "image"]), raw=st.one_of(st.none(), st.binary(max_size=200)),
           header=st.sampled_from(["multipart/form-data; boundary=xyz", "application/json", "image/png", "text/csv"]))
    def check(files, field, raw, header) -> None:
        if raw is None:
            answer = httpx.post(url, files=[(field, (f"f{i}", blob, kind)) for i, (blob, kind) in enumerate(files)]
                                or None, timeout=60)
        else:
            answer = httpx.post(url, content=raw, headers={"content-type": header}, timeout=60)
        assert answer.status_code < 500, (answer.status_code, answer.text)
        if answer.status_code != 200:
            assert answer.status_code in (400, 413, 415, 422) and answer.json()["detail"], answer.text

    check()


def _strict_json(answer) -> object:
    """The answer's body parsed as strict JSON (NaN and Infinity are not JSON: a parser in another language fails)."""
    def refuse(constant: str):
        raise AssertionError(f"{constant} in a JSON answer: {answer.text[:300]}")

    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    return json.loads(answer.text, parse_constant=refuse)


def _post_json_bytes(url: str, body: bytes, content_type: str = "application/json") -> "httpx.Response":
    return httpx.post(url, content=body, headers={"content-type": content_type}, timeout=60)


_EXAMPLE = '{"texts": ['


@pytest.mark.parametrize("case", [
    "deep_arrays", "deep_inside_texts", "deep_objects", "not_utf8", "utf16", "empty", "only_whitespace", "nan",
    "infinity", "repeated_field", "latin1_charset", "over_the_size_limit", "top_k_true", "top_k_float",
    "top_k_huge_number", "top_k_digits", "query_parameter", "lone_surrogate", "string_body", "unclosed_string"])
def test_malformed_text_requests_get_a_4xx_naming_the_problem(text_server, case) -> None:
    """Every malformed body gets a 4xx whose JSON detail names the field or the problem and how to fix it (a
    RecursionError used to answer 500 to deeply nested JSON); the server keeps serving."""
    url = f"{text_server.url}/predict"
    if case == "deep_arrays":
        answer = _post_json_bytes(url, b"[" * 30_000 + b"]" * 30_000)  # 60 kB: under the body limit
        code, words = 400, ["nests 30000 levels", "limit is 32", _EXAMPLE]
    elif case == "deep_inside_texts":
        answer = _post_json_bytes(url, b'{"texts": ' + b"[" * 5000 + b'"a"' + b"]" * 5000 + b"}")
        code, words = 400, ["nests 5001 levels", "limit is 32"]
    elif case == "deep_objects":
        answer = _post_json_bytes(url, b'{"a":' * 3000 + b"1" + b"}" * 3000)
        code, words = 400, ["nests 3000 levels"]
    elif case == "not_utf8":
        answer = _post_json_bytes(url, b'{"texts": ["caf\xe9"]}')
        code, words = 400, ["not UTF-8", "byte 0xe9 at offset 15", "encode the JSON as UTF-8"]
    elif case == "utf16":
        answer = _post_json_bytes(url, '{"texts": ["a film"]}'.encode("utf-16"))
        code, words = 400, ["not UTF-8", "encode the JSON as UTF-8"]
    elif case == "empty":
        answer = _post_json_bytes(url, b"")
        code, words = 400, ["body is empty", _EXAMPLE]
    elif case == "only_whitespace":
        answer = _post_json_bytes(url, b" \r\n\t ")
        code, words = 400, ["body is empty", _EXAMPLE]
    elif case == "nan":
        answer = _post_json_bytes(url, b'{"texts": ["a film"], "top_k": NaN}')
        code, words = 400, ["NaN is not a JSON value", _EXAMPLE]
    elif case == "infinity":
        answer = _post_json_bytes(url, b'{"texts": ["a film"], "top_k": -Infinity}')
        code, words = 400, ["-Infinity is not a JSON value"]
    elif case == "repeated_field":
        answer = _post_json_bytes(url, b'{"texts": ["a film"], "texts": ["b", "c"]}')
        code, words = 422, ["field 'texts' appears more than once", "give each field once"]
    elif case == "latin1_charset":
        answer = _post_json_bytes(url, '{"texts": ["café"]}'.encode("latin-1"), "application/json; charset=latin-1")
        code, words = 415, ["charset is latin-1", "UTF-8"]
    elif case == "over_the_size_limit":  # 3 texts of 200 characters: about 73 kB at most, even escaped
        answer = _post_json_bytes(url, json.dumps({"texts": ["a" * 100_000]}).encode())
        code, words = 413, ["request body is 100,", "bytes; the limit is 72,928 bytes"]
    elif case == "top_k_true":
        answer = httpx.post(url, json={"texts": ["a film"], "top_k": True})
        code, words = 422, ["field 'top_k'", "integer", _EXAMPLE]
    elif case == "top_k_float":
        answer = httpx.post(url, json={"texts": ["a film"], "top_k": 1.5})
        code, words = 422, ["field 'top_k'", "integer"]
    elif case == "top_k_huge_number":
        answer = httpx.post(url, json={"texts": ["a film"], "top_k": 10**9})
        code, words = 422, ["top_k must be from 1 to 2", "got 1000000000"]
    elif case == "top_k_digits":  # more digits than Python converts to an int
        answer = _post_json_bytes(url, b'{"texts": ["a film"], "top_k": ' + b"9" * 5000 + b"}")
        code, words = 400, ["not valid JSON", _EXAMPLE]
    elif case == "query_parameter":
        answer = httpx.post(f"{url}?top_k=1", json={"texts": ["a film"]})
        code, words = 422, ["unknown query parameter", "'top_k'", "JSON body"]
    elif case == "lone_surrogate":  # valid JSON escapes, but not Unicode text: the tokenizer used to fail (500)
        answer = _post_json_bytes(url, b'{"texts": ["fine", "bad \\ud800 half"]}')
        code, words = 422, ["texts[1]", "unpaired surrogate", "\\ud800", "character 4", "valid UTF-8"]
    elif case == "string_body":
        answer = httpx.post(url, json="a film")
        code, words = 422, ["must be an object", "got str"]
    else:
        answer = _post_json_bytes(url, b'{"texts": ["a film]}')
        code, words = 400, ["not valid JSON", "Unterminated string"]
    assert answer.status_code == code, answer.text
    detail = _strict_json(answer)["detail"]
    assert all(w in detail for w in words), detail
    assert httpx.get(f"{text_server.url}/health").status_code == 200  # still serving


def test_unicode_emoji_nul_and_control_characters_are_classified(text_server) -> None:
    texts = ["a wonderful film 😀🎬", "a dull\x00 mess", "ça a été formidable, \u202eright-to-left\u202c",
             "tab\tand\nnew line e\u0301"]
    answer = httpx.post(f"{text_server.url}/predict", json={"texts": texts[:3]}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = _strict_json(answer)
    assert [p["input"] for p in body["predictions"]] == ["texts[0]", "texts[1]", "texts[2]"]
    for prediction in body["predictions"]:
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    answer = httpx.post(f"{text_server.url}/predict", json={"texts": texts[3:]}, timeout=60)
    assert answer.status_code == 200, answer.text


def _raw_request(port: int, head: bytes, body_part: bytes) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    raw.sendall(head + body_part)
    return raw


def _http_head(content_type: str, length: int) -> bytes:
    return (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("case", ["text_mid_body", "image_mid_upload", "text_before_the_answer"])
def test_a_client_that_disconnects_is_one_line_in_the_log(text_server, image_server, case) -> None:
    """A client that goes away mid-request (a closed browser tab, a killed script) is logged in one line at most,
    not with a 40-line traceback, and the server keeps answering."""
    server = image_server if case == "image_mid_upload" else text_server
    before = len(server.output())
    if case == "text_mid_body":
        raw = _raw_request(server.port, _http_head("application/json", 50_000), b'{"texts": ["a film ' + b"x" * 1000)
    elif case == "image_mid_upload":
        part = (b'--b\r\nContent-Disposition: form-data; name="files"; filename="cat.png"\r\n'
                b"Content-Type: image/png\r\n\r\n" + _png()[:500])
        raw = _raw_request(server.port, _http_head("multipart/form-data; boundary=b", 40_000), part)
    else:
        body = json.dumps({"texts": ["a wonderful film"]}).encode()
        raw = _raw_request(server.port, _http_head("application/json", len(body)), body)
    time.sleep(0.5)
    raw.close()
    time.sleep(1.0)
    assert httpx.get(f"{server.url}/health").status_code == 200
    good = httpx.post(f"{server.url}/predict", json={"texts": ["a film"]}) if server is text_server else \
        httpx.post(f"{server.url}/predict", files=_files(_png()))
    assert good.status_code == 200, good.text
    log = server.output()[before:]
    assert "Traceback" not in log and "ClientDisconnect" not in log, log
    assert len([line for line in log.splitlines() if line.strip()]) <= 1, log


def test_a_slow_client_does_not_hold_up_the_others(text_server) -> None:
    """One client sends half its body and stalls; concurrent requests are answered meanwhile, and the slow one is
    answered when its body arrives."""
    body = json.dumps({"texts": ["a slow, careful film"]}).encode()
    raw = _raw_request(text_server.port, _http_head("application/json", len(body)), body[:10])
    try:
        async def burst() -> list:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(*[client.post(f"{text_server.url}/predict", json={"texts": [f"film {i}"]})
                                              for i in range(6)], client.get(f"{text_server.url}/health"))

        answers = asyncio.run(burst())
        assert [a.status_code for a in answers] == [200] * 7
        raw.sendall(body[10:])
        reply = b""
        while not reply.rstrip().endswith(b"}"):
            chunk = raw.recv(65536)
            if not chunk:
                break
            reply += chunk
    finally:
        raw.close()
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply[:300]
    assert json.loads(payload)["predictions"][0]["input"] == "texts[0]"


@pytest.mark.parametrize("method, path, code, words", [
    ("GET", "/predict", 405, ["GET is not allowed on /predict", "use POST"]),
    ("PUT", "/predict", 405, ["PUT is not allowed", "use POST"]),
    ("POST", "/health", 405, ["POST is not allowed on /health", "use GET"]),
    ("DELETE", "/info", 405, ["use GET"]),
    ("GET", "/predictions", 404, ["no endpoint /predictions", "POST /predict", "GET /health"]),
    ("POST", "/", 404, ["no endpoint /", "POST /predict"]),
])
def test_wrong_methods_and_paths_get_json_naming_the_endpoints(text_server, method, path, code, words) -> None:
    answer = httpx.request(method, f"{text_server.url}{path}", timeout=30)
    assert answer.status_code == code, answer.text
    detail = _strict_json(answer)["detail"]
    assert all(w in detail for w in words), detail


def test_micro_batcher_keeps_one_bad_request_from_failing_the_others() -> None:
    """Requests that share a forward pass: when the batch fails because of one request's inputs, every other
    request still gets its rows (each request of the failed batch is run alone)."""
    from transferkit.serving.batching import MicroBatcher

    def predict(items):
        if any(x < 0 for x in items):
            raise ValueError("negative input")
        return np.array([[float(x), 1.0 - float(x)] for x in items])

    async def main():
        batcher = MicroBatcher(predict, wait_s=0.05, max_items=16)
        await batcher.start()
        jobs = [[0.1], [-1.0], [0.2, 0.3]]
        results = await asyncio.gather(*[batcher.submit(j) for j in jobs], return_exceptions=True)
        await batcher.stop()
        return results

    good, bad, pair = asyncio.run(main())
    assert isinstance(bad, ValueError)
    assert good[:, 0].tolist() == pytest.approx([0.1]) and pair[:, 0].tolist() == pytest.approx([0.2, 0.3])


def _write_consistently(folder: Path, config: dict | None = None, weights: bytes | None = None) -> None:
    """Change a model folder's config.json and/or weights AND the checksums that guard them (config.json's
    'files' and manifest.json), as a careless tool would: only the content checks can catch what is wrong."""
    import hashlib

    config = config or json.loads((folder / "config.json").read_text())
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    config["files"]["model.safetensors"] = digest
    text = json.dumps(config, indent=2) + "\n"
    (folder / "config.json").write_text(text)
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        manifest["files"].update({"config.json": hashlib.sha256(text.encode()).hexdigest(),
                                  "model.safetensors": digest})
        manifest_path.write_text(json.dumps(manifest))


def _nan_weights(folder: Path) -> bytes:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["backbone.model.conv_stem.weight"].fill_(float("nan"))  # the head is finite: only running it tells
    path = folder.parent / "nan.safetensors"
    save_file(tensors, str(path), metadata={"format": "transferkit-model"})
    return path.read_bytes()


@pytest.mark.parametrize("case", ["fewer_classes", "repeated_class", "config_edited_by_hand", "pickled_weights",
                                  "pickled_weights_two_workers", "nan_weights", "empty_weights", "multitask_json"])
def test_serve_refuses_a_damaged_model_folder_before_starting(models, tmp_path: Path, case) -> None:
    """A folder whose class list disagrees with the head, or whose weights pass the checksums but are not
    safetensors or give NaN, used to start and answer 500 (or die in a uvicorn traceback): now ``serve`` loads and
    runs the model first and exits with code 2 and one ``error:`` line naming the folder and the fix."""
    import pickle
    import shutil

    from test_cli import run

    folder = tmp_path / "damaged-model"
    shutil.copytree(models["image"], folder)
    config = json.loads((folder / "config.json").read_text())
    options: list[str] = []
    if case == "fewer_classes":
        config["classes"] = ["cat", "dog"]
        _write_consistently(folder, config)
        words = ["classes", "2 names", "3 outputs", "config.json"]
    elif case == "repeated_class":
        config["classes"] = ["cat", "dog", "cat"]
        _write_consistently(folder, config)
        words = ["cat", "more than once", "config.json"]
    elif case == "config_edited_by_hand":  # the checksums are not updated: the manifest notices
        config["classes"] = ["cat", "dog", "wolf", "fox"]
        (folder / "config.json").write_text(json.dumps(config))
        words = ["config.json", "changed since the model was saved", "Restore"]
    elif case.startswith("pickled_weights"):
        _write_consistently(folder, weights=pickle.dumps({"head.linear.weight": [[0.5] * 256] * 3}))
        options = ["--workers", "2"] if case.endswith("two_workers") else []
        words = ["model.safetensors", "not a transferkit safetensors", "Restore it"]
    elif case == "nan_weights":
        _write_consistently(folder, weights=_nan_weights(folder))
        words = ["damaged-model", "NaN"]
    elif case == "empty_weights":
        _write_consistently(folder, weights=b"")
        words = ["model.safetensors", "damaged-model"]
    else:  # another kind of folder: the service takes single models
        config["kind"] = "multitask"
        config["format_version"] = 2
        _write_consistently(folder, config)
        words = ["damaged-model", "multitask"]
    saved = {p.name: p.read_bytes() for p in folder.iterdir()}
    port = _free_port()
    proc = run("serve", str(folder), "--port", str(port), *options, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(folder) in errors[0], proc.stderr
    assert all(w in errors[0] for w in words), errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout and "uvicorn" not in proc.stderr.lower(), proc.stderr
    with pytest.raises(httpx.HTTPError):  # it never listened
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == saved  # nothing rewritten


def test_a_worker_that_cannot_load_the_model_exits_in_one_line(models, tmp_path: Path) -> None:
    """A worker process of ``serve --workers N`` whose model folder broke after ``serve`` checked it: one line on
    stderr and uvicorn's start-up failure status (3), which stops the whole service."""
    from transferkit.serving.settings import ENV_SETTINGS, make_serve_config

    folder = tmp_path / "gone-model"
    settings = make_serve_config(model=str(folder))
    env = {**os.environ, ENV_SETTINGS: settings.model_dump_json(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", "from transferkit.serving.app import app_from_environment as f; f()"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc
    assert proc.stderr.strip().splitlines() == [f"error: {folder}: no such model folder."], proc.stderr


@pytest.mark.parametrize("case", ["port_in_use", "port_too_large", "port_negative", "host_not_an_address",
                                  "host_not_of_this_machine", "host_empty", "port_not_a_number"])
def test_serve_refuses_an_address_it_cannot_use(models, case) -> None:
    from test_cli import run

    busy = None
    if case == "port_in_use":
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args, words = ["--port", str(port)], [f"--port {port}", "already in use", "choose another --port"]
    elif case == "port_too_large":
        args, words = ["--port", "70000"], ["port (--port)", "65535", "70000"]
    elif case == "port_negative":
        args, words = ["--port", "-1"], ["port (--port)", "greater than or equal to 0"]
    elif case == "host_not_an_address":
        args, words = ["--host", "999.1.1.1"], ["--host 999.1.1.1", "cannot listen", "127.0.0.1", "0.0.0.0"]
    elif case == "host_not_of_this_machine":  # TEST-NET-1: reserved for documentation, never a local address
        args, words = ["--host", "192.0.2.1"], ["--host 192.0.2.1", "cannot listen", "an address of this machine"]
    elif case == "host_empty":
        args, words = ["--host", ""], ["host (--host)", "at least 1 character"]
    else:
        args, words = ["--port", "http"], ["--port", "valid integer"]
    try:
        proc = run("serve", str(models["text"]), *args, check=False)
    finally:
        if busy is not None:
            busy.close()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert all(w in proc.stderr for w in words), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "serving" not in proc.stderr  # refused before anything started


def test_requests_after_the_model_folder_is_deleted(models, tmp_path: Path) -> None:
    """The service keeps the model it loaded: deleting (or replacing) the folder does not break /predict, and /info
    still answers strict JSON (metrics with NaN in them, as an interrupted evaluation may leave, become null)."""
    import shutil

    folder = tmp_path / "served-model"
    shutil.copytree(models["text"], folder)
    (folder / "metrics.json").write_text('{"test": {"accuracy": NaN, "macro_f1": Infinity, "n": 4}}')
    server = Server(folder, "--max-batch", "2", cache=models["cache"])
    try:
        info = _strict_json(httpx.get(f"{server.url}/info", timeout=30))
        assert info["test_metrics"] == {"accuracy": None, "macro_f1": None, "n": 4}
        before = _strict_json(httpx.post(f"{server.url}/predict", json={"texts": ["a wonderful film"]}, timeout=60))
        shutil.rmtree(folder)
        answer = httpx.post(f"{server.url}/predict", json={"texts": ["a wonderful film"]}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert _strict_json(answer)["predictions"] == before["predictions"]
        info = _strict_json(httpx.get(f"{server.url}/info", timeout=30))
        assert info["model_card"] is None and info["test_metrics"] == {} and info["classes"] == ["negative", "positive"]
        assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
        assert "Traceback" not in server.output()
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf"])
def test_serve_refuses_a_file_limit_that_is_not_a_size(models, value) -> None:
    """``--max-file-mb -5`` used to become a 1-byte limit silently (every upload refused) and ``nan`` a traceback."""
    from test_cli import run

    proc = run("serve", str(models["image"]), "--max-file-mb", value, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "--max-file-mb must be a size in MB above 0" in proc.stderr and "Traceback" not in proc.stderr
